"""Issue 16, item 2: one training per run directory. Two irem-train processes started in one
directory: the second refuses, naming the first, and leaves the first's config alone; a lock
left by a killed run is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import finish, start
from tiny_runs import TRAIN, tiny_trainer

from irem.checkpoint import CheckpointError
from irem.run_lock import LOCK, run_lock


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, finish(proc).stderr
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def test_two_irem_trains_started_at_once_in_one_directory_one_refuses(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TRAIN, "trainer.iterations=1000000", "trainer.checkpoint_every=1", f"hydra.run.dir={run_dir}"]
    procs = [start("irem-train", [*args, f"seed={seed}"], tmp_path) for seed in (0, 1)]
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.05)
        loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
        winner = procs[1 - loser]
        refused = finish(procs[loser])
        assert refused.returncode == 1, refused.stderr
        assert f"in use by process {winner.pid} on host {socket.gethostname()}" in refused.stderr
        assert str(run_dir / LOCK) in refused.stderr and "Traceback" not in refused.stderr
        wait_for(run_dir / "checkpoints" / "last.pt", winner)
        assert f"seed: {1 - loser}" in (run_dir / ".hydra" / "config.yaml").read_text()  # not the refused one's
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    done = finish(winner)
    assert done.returncode == 143, done.stderr  # SIGTERM's own status (issue 16, item 8)
    assert "checkpoint saved" in done.stdout and "Traceback" not in done.stderr
    assert not (run_dir / LOCK).exists()  # released at exit


def test_a_stale_lock_is_taken_over_with_a_note(out_dir: Path, capsys) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out_dir / LOCK).write_text(f"{dead.pid} {socket.gethostname()}\n")
    trainer = tiny_trainer(out_dir, 2)
    trainer.fit()
    assert "taking over the stale lock" in capsys.readouterr().err
    assert trainer.iteration == 2 and not (out_dir / LOCK).exists()


def test_a_live_lock_refuses_and_is_left_alone(out_dir: Path) -> None:
    (out_dir / LOCK).write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a process that runs
    with pytest.raises(CheckpointError, match=f"in use by process {os.getppid()}"):
        tiny_trainer(out_dir, 2).fit()
    (out_dir / LOCK).write_text("1234 some-other-host\n")  # cannot be checked from here: refused too
    with pytest.raises(CheckpointError, match="on host some-other-host"), run_lock(out_dir):
        pass
    assert (out_dir / LOCK).read_text() == "1234 some-other-host\n"


# -- issue 27, item 2: a lock two processes cannot hold at once ----------------------------------------


def test_no_two_processes_hold_the_lock_when_they_take_over_a_stale_one(tmp_path: Path) -> None:
    """The situation after a SIGKILL that a scheduler restarts twice: two starts race to take over
    one stale lock, 200 times; never do both hold it at once (the lock by the file's existence alone,
    with the same race, let both in 76 times in 200)."""
    import json

    script = Path(__file__).with_name("lock_race.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "200"], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout)
    assert outcomes["double"] == 0, outcomes
    assert outcomes["held"] >= 200 and outcomes["held"] + outcomes["refused"] == 400, (
        outcomes
    )  # one in per trial, at least


def test_a_lock_held_by_a_process_killed_with_sigkill_is_free_at_once(out_dir: Path, capsys) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from irem.run_lock import run_lock\nwith run_lock({str(out_dir)!r}):\n print('in', flush=True)\n input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "in"
    with pytest.raises(CheckpointError, match=f"in use by process {holder.pid}"), run_lock(out_dir):
        pass
    holder.kill()
    holder.wait()
    with run_lock(out_dir):  # the kernel released its lock with the process
        assert (out_dir / LOCK).read_text().split()[0] == str(os.getpid())
    assert f"of process {holder.pid}" in capsys.readouterr().err and not (out_dir / LOCK).exists()


def test_without_os_locks_the_lock_falls_back_to_the_file_and_never_takes_one_over(out_dir: Path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with run_lock(out_dir):
        assert (out_dir / LOCK).read_text().split()[0] == str(os.getpid())
    assert not (out_dir / LOCK).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out_dir / LOCK).write_text(f"{dead.pid} {socket.gethostname()}\n")
    with (
        pytest.raises(CheckpointError, match=rf"does not support OS locks.*delete {out_dir / LOCK}"),
        run_lock(out_dir),
    ):
        pass
    assert (out_dir / LOCK).exists()  # left alone: only the user can know it is stale
