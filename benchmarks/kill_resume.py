"""SIGKILL a short irem-train run at random moments, resume it each time, and compare the result
bit for bit with an uninterrupted run of the same command.

    python benchmarks/kill_resume.py --kills 12          # last line: kills=12 mid_write=3 identical=true
    python benchmarks/kill_resume.py --kind ired --kills 12   # IRED's objective and an EMA of the weights

The run checkpoints every iteration (trainer.checkpoint_every=1), so kills land before, between
and during checkpoint writes; `mid_write` counts those that left a temporary checkpoint file
behind (the next start removes it; a kill leaves the run directory's lock file, whose OS lock the
kernel released, and the next start takes it over). A kill is sent a random 0 to `--window` seconds after the process has written a
checkpoint of its own (so it has resumed and trained, not only started). The final weights,
optimizer state, generators (and with `--kind ired` the EMA of the weights) of the
killed-and-resumed run must equal the uninterrupted run's exactly, and no temp file or lock may be
left.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from irem.checkpoint import load

BIN = Path(sys.executable).parent


KINDS = {
    "irem": ["task.size=3"],
    # IRED's preset (objective=ired, solver=annealed, landscapes, EMA every 10 steps) at a tiny size,
    # the EMA updated every 2 steps so every kill lands between several of its updates
    "ired": ["experiment=ired_inverse", "task.size=3", "trainer.ema_every=2"],
}


def train_command(run_dir: Path, iterations: int, kind: str, width: int) -> list[str]:
    return [
        str(BIN / "irem-train"),
        *KINDS[kind],
        f"energy.width={width}",
        "trainer.batch_size=32",
        f"trainer.iterations={iterations}",
        "trainer.checkpoint_every=1",
        "trainer.progress=false",
        "eval.run=false",
        "threads=1",
        f"hydra.run.dir={run_dir}",
    ]


def run(run_dir: Path, iterations: int, kind: str, width: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        train_command(run_dir, iterations, kind, width),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(u, v) for u, v in zip(a, b, strict=True))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument(
        "--kind", choices=sorted(KINDS), default="irem", help="irem, or ired: IRED's preset with an EMA"
    )
    parser.add_argument("--width", type=int, default=16, help="energy width: larger checkpoints take longer to write")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--window", type=float, default=0.6, help="seconds after a fresh checkpoint to kill within")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/ckpt/kill_resume")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out) / args.kind
    shutil.rmtree(out, ignore_errors=True)
    ref_dir, killed_dir = out / "uninterrupted", out / "killed"

    ref = run(ref_dir, args.iterations, args.kind, args.width)
    kills = mid_write = restarts = 0
    ckpt = killed_dir / "checkpoints" / "last.pt"
    while kills < args.kills:
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        proc = run(killed_dir, args.iterations, args.kind, args.width)
        restarts += 1
        while proc.poll() is None and (not ckpt.exists() or ckpt.stat().st_mtime_ns == before):
            time.sleep(0.01)
        if proc.poll() is not None:
            break  # finished (or failed) before it could be killed
        time.sleep(rng.uniform(0, args.window))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        temps = list(ckpt.parent.glob(".*.tmp"))
        mid_write += bool(temps)
        print(f"kill {kills}: iteration {load(ckpt)['iteration']}, temp files {len(temps)}")
    final = run(killed_dir, args.iterations, args.kind, args.width)
    err = final.communicate()[1]
    ref_err = ref.communicate()[1]
    if final.returncode != 0 or ref.returncode != 0:
        print(err[-2000:], ref_err[-2000:], file=sys.stderr)
        raise SystemExit(f"a run failed: killed run exit {final.returncode}, uninterrupted exit {ref.returncode}")
    a, b = (load(d / "checkpoints" / "last.pt") for d in (ref_dir, killed_dir))
    keys = ("model", "optimizer", "generator", "torch_rng", "iteration") + (("ema",) if args.kind == "ired" else ())
    identical = all(equal(a[k], b[k]) for k in keys) and a["iteration"] == args.iterations
    leftovers = list((killed_dir / "checkpoints").glob("*.tmp")) + list(killed_dir.glob("train.lock"))
    print(f"starts={restarts + 1} iterations={b['iteration']} leftovers={len(leftovers)}")
    print(f"kind={args.kind} kills={kills} mid_write={mid_write} identical={str(identical and not leftovers).lower()}")
    if not identical or leftovers or kills < args.kills:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
