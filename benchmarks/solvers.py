"""Solvers compared on one trained energy each: error against budget and wall-clock per solve.

It trains nothing. It descends two trained runs with each solver at each budget, on the fixed test
and harder splits:

    irem-train solver=gd trainer.time_limit=600 trainer.iterations=1000000 hydra.run.dir=runs/backward/last
    irem-train experiment=sudoku_graph threads=1 hydra.run.dir=runs/sudoku/graph
    python benchmarks/solvers.py --inverse runs/backward/last --sudoku runs/sudoku/graph

The solvers are the trained descent changed by its flat settings, or a preset's chain at the trained
step size (the step in the energy's units), or at a step of its own where the transform makes the
step an answer-unit length (Adam, the normalised step, exponentiated gradient; their presets'
steps, not tuned on these splits):

    gd               the trained descent (IREM's plain step)
    accept           + accept-if-lower (a rejected step halves)
    momentum         + heavy ball 0.5 with gradient restart
    langevin_annealed  step and noise (0.05 of the answer scale) both cooled along a cosine
    adam             Adam on y, step 0.1 cooled along a cosine (configs/solver/gd_adam.yaml)
    normalized       normalised step 0.1, accept-if-lower (gd_normalized.yaml)
    mirror           exponentiated gradient on each cell's digits (Sudoku only; gd_mirror.yaml, step 0.5)
    best_of_4        4 starts of the trained descent, the lowest final energy kept (no verifier)

Inverse reports the mean squared error, Sudoku the board accuracy (a valid grid keeping every
given); each with the seconds of the solve per instance. On Sudoku, every single-start solver also
runs 4x the largest budget, the compute of best-of-4 at the largest: whether one longer descent
reaches what four shorter ones reach. Last line: key=value pairs.
"""

# ruff: noqa: E402  (the OpenMP wait policy is set before torch is imported, as in irem/cli.py)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from irem.openmp import configure_wait_policy

configure_wait_policy()

import torch

from irem.build import load_run
from irem.checkpoint import run_checkpoint
from irem.seeds import eval_generator
from irem.solvers.best_of_n import BestOfN
from irem.solvers.descent import Descent
from irem.solvers.transforms.accept import AcceptIfLower
from irem.solvers.transforms.mirror import ExponentiatedGradient
from irem.solvers.transforms.noise import Noise
from irem.solvers.transforms.normalize import Normalize
from irem.solvers.transforms.per_coordinate import ScaleByAdam
from irem.solvers.transforms.schedule import StepSchedule

COMMANDS = {
    "inverse": "irem-train solver=gd trainer.time_limit=600 trainer.iterations=1000000 hydra.run.dir={run}",
    "sudoku": "irem-train experiment=sudoku_graph threads=1 hydra.run.dir={run}",
}


def solvers_for(trained: Descent, sudoku: bool) -> dict[str, torch.nn.Module]:
    """Each solver of the module docstring, built from the trained descent."""
    step = float(trained.step_size.detach())
    base = {"step_size": step, "max_steps": trained.max_steps}
    out = {
        "gd": trained,
        "accept": trained.with_settings({"accept_if_lower": True}),
        "momentum": trained.with_settings({"momentum": 0.5, "restart": True}),
        "langevin_annealed": Descent(
            **base, transforms=[StepSchedule("cosine", 0.1), Noise(0.05, schedule="cosine", final_fraction=0.01)]
        ),
        "adam": Descent(0.1, trained.max_steps, transforms=[ScaleByAdam(b1=0.5), StepSchedule("cosine", 0.001)]),
        "normalized": Descent(0.1, trained.max_steps, transforms=[Normalize(), AcceptIfLower()]),
        "best_of_4": BestOfN(trained, starts=4),
    }
    if sudoku:
        out["mirror"] = Descent(0.5, trained.max_steps, transforms=[ExponentiatedGradient("logits")])
    return out


def score(task, problem, y: torch.Tensor, metric: str) -> float:
    return float(task.metrics(problem, y)[metric].float().mean())


def compare(run: Path, budgets: list[int], instances: int, sudoku: bool, seed: int) -> dict[str, dict]:
    _, _, task, model = load_run(run)
    model.eval()
    metric = "board_accuracy" if sudoku else "mse"
    trained = model.solver
    rows: dict[str, dict] = {}
    for name, solver in solvers_for(trained, sudoku).items():
        model.use_solver(solver)
        rows[name] = {}
        for split in ("test", "harder"):
            problem = task.split(split)
            problem = problem.select(torch.arange(min(instances, problem.num_instances)))
            own = budgets + ([4 * budgets[-1]] if sudoku and name != "best_of_4" else [])
            for b in own:
                g = eval_generator(seed, split)
                start = time.perf_counter()
                with torch.no_grad():
                    preds = model.predict(task, problem, [b], g)
                seconds = time.perf_counter() - start
                rows[name][(split, b)] = (score(task, problem, preds.answers[str(b)], metric), seconds / len(problem))
        model.solver = trained
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


def print_table(title: str, rows: dict[str, dict], budgets: list[int], metric: str) -> None:
    for split in ("test", "harder"):
        cols = sorted({b for r in rows.values() for (s, b) in r if s == split})
        print(f"\n{title}, {split} split: {metric} (ms per instance) by budget")
        print(f"{'solver':18s}" + "".join(f"{b:>18d}" for b in cols))
        for name, r in rows.items():
            cells = [r.get((split, b)) for b in cols]
            print(
                f"{name:18s}"
                + "".join(
                    f"{v:10.4g} ({1000 * s:5.1f})" if v is not None else f"{'':18s}"
                    for v, s in ((c if c else (None, None)) for c in cells)
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inverse", type=Path, required=True)
    parser.add_argument("--sudoku", type=Path, required=True)
    parser.add_argument("--inverse-budgets", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--sudoku-budgets", type=int, nargs="+", default=[20, 80, 320])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    missing = [k for k in COMMANDS if not run_checkpoint(getattr(args, k)).is_file()]
    if missing:
        print("Missing trained runs; make them with (about 10 and 30 minutes on one core):", file=sys.stderr)
        for k in missing:
            print("  " + COMMANDS[k].format(run=getattr(args, k)), file=sys.stderr)
        raise SystemExit(2)
    inverse = compare(args.inverse, args.inverse_budgets, args.instances, False, args.seed)
    print_table("inverse", inverse, args.inverse_budgets, "mse")
    sudoku = compare(args.sudoku, args.sudoku_budgets, args.instances, True, args.seed)
    print_table("sudoku", sudoku, args.sudoku_budgets, "board accuracy")
    last_inv, last_sud = args.inverse_budgets[-1], args.sudoku_budgets[-1]
    out = {f"inv_{n}_harder": r[("harder", last_inv)][0] for n, r in inverse.items()}
    out.update({f"sud_{n}_test": r[("test", last_sud)][0] for n, r in sudoku.items()})
    long = {n: r[("test", 4 * last_sud)][0] for n, r in sudoku.items() if ("test", 4 * last_sud) in r}
    best_single = max(long, key=long.get)
    out.update(best_single_long=best_single, best_single_long_test=long[best_single])
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
