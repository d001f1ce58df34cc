"""Backward modes side by side: training memory against the number of descent steps, and what an
implicit-differentiation training reaches against IREM's last-step one at equal wall-clock.

    python benchmarks/backward_modes.py                        # memory and time per training solve
    python benchmarks/backward_modes.py --runs runs/backward   # + the two trained runs' errors

Memory is the bytes autograd holds for the loss's backward once a training solve of IREM's inverse
energy (MLP 512 x 3, batch --batch) has returned, counted through saved-tensor hooks (the graph only
grows during the solve, so it is its peak), at 10, 40 and 160 descent steps, for `last`, `unroll`
and `implicit`. Time is one training iteration's forward and backward, in the same run.

The trained runs are made by the presets (each about --minutes of training on one core):

    irem-train solver=gd trainer.time_limit=600 trainer.iterations=1000000 hydra.run.dir=runs/backward/last
    irem-train solver=gd_implicit solver.max_steps=40 trainer.time_limit=600 trainer.iterations=1000000 \\
        hydra.run.dir=runs/backward/implicit

Last line: key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.descent import Descent
from irem.tasks.matrix import Inverse

COMMANDS = {
    "last": "irem-train solver=gd trainer.time_limit=600 trainer.iterations=1000000 hydra.run.dir={runs}/last",
    "implicit": (
        "irem-train solver=gd_implicit solver.max_steps=40 trainer.time_limit=600 trainer.iterations=1000000 "
        "hydra.run.dir={runs}/implicit"
    ),
}


class Kept:
    """A tensor autograd saved for backward, counted while the graph holds it."""

    live = 0

    def __init__(self, t: torch.Tensor) -> None:
        self.t, self.size = t, t.numel() * t.element_size()
        Kept.live += self.size

    def __del__(self) -> None:
        Kept.live -= self.size


def measure(mode: str, steps: int, batch: int, generator: torch.Generator) -> tuple[float, float]:
    """(MiB held for the backward pass after the solve, seconds of one forward and backward)."""
    task = Inverse()
    torch.manual_seed(0)
    model = EnergyModel(MLPEnergy(**task.dims()), Descent(max_steps=steps, backward=mode), IREMObjective(), 0)
    problem = task.sample(batch, generator)
    Kept.live = 0
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(Kept, lambda k: k.t):
        loss, _ = model.training_loss(task, problem, generator)
    held = Kept.live
    loss.backward()
    return held / 2**20, time.perf_counter() - start


def trained_errors(run: Path) -> dict[str, float]:
    rows = json.loads((run / "eval.json").read_text())
    return {f"{r['split']}_{r['budget']}": r["value"] for r in rows if r["metric"] == "mse"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=None, help="folder of the trained runs (last/, implicit/)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    out: dict[str, float] = {}
    print(f"{'mode':10s} {'steps':>5s} {'MiB held':>9s} {'s/iter':>7s}")
    for mode in ("last", "unroll", "implicit"):
        for steps in (10, 40, 160):
            mib, seconds = measure(mode, steps, args.batch, g)
            print(f"{mode:10s} {steps:5d} {mib:9.1f} {seconds:7.2f}")
            out[f"{mode}_{steps}_mib"] = mib
    if args.runs is not None:
        missing = [k for k in COMMANDS if not (args.runs / k / "eval.json").is_file()]
        if missing:
            print("The trained runs are missing; make them with (10 minutes each, one core):", file=sys.stderr)
            for k in missing:
                print("  " + COMMANDS[k].format(runs=args.runs), file=sys.stderr)
            raise SystemExit(2)
        for k in COMMANDS:
            errors = trained_errors(args.runs / k)
            summary = json.loads((args.runs / k / "train_summary.json").read_text())
            print(f"{k}: {summary['iterations']} iterations in {summary['train_seconds']:.0f} s; mse {errors}")
            out[f"{k}_iterations"] = summary["iterations"]
            out.update({f"{k}_{key}": v for key, v in errors.items()})
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
