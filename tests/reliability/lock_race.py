"""Two starts racing to take over one stale run-directory lock, many times: run as a script, from a
process that has not imported torch, so each fork is cheap (tests/reliability/test_run_lock.py).

    python tests/reliability/lock_race.py <folder> <trials>    # prints {"held": .., "refused": .., "double": ..}
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from irem.checkpoint import CheckpointError
from irem.run_lock import LOCK, run_lock


def contend(run_dir: Path, marker: Path, barrier, results) -> None:
    """One start: take the lock, and while holding it claim `marker` exclusively; a claim that finds
    the marker taken means the other process held the lock at the same time."""
    barrier.wait()
    try:
        with run_lock(run_dir):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                results.put("double")
                return
            time.sleep(0.003)
            os.close(fd)
            os.unlink(marker)
            results.put("held")
    except CheckpointError:
        results.put("refused")


def race(folder: Path, trials: int) -> dict[str, int]:
    ctx = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no running process: the lock it "left" is stale
    outcomes = {"held": 0, "refused": 0, "double": 0}
    for trial in range(trials):
        run_dir = folder / f"run{trial}"
        run_dir.mkdir(parents=True)
        (run_dir / LOCK).write_text(f"{dead.pid} {socket.gethostname()}\n")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=contend, args=(run_dir, folder / f"m{trial}", barrier, results)) for _ in "ab"]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        for _ in procs:
            outcomes[results.get(timeout=5)] += 1
    return outcomes


if __name__ == "__main__":
    print(json.dumps(race(Path(sys.argv[1]), int(sys.argv[2]))))
