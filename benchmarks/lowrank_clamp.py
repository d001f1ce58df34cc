"""Low-rank completion with and without the observed entries clamped, on trained runs.

For each run given, the test and harder splits are evaluated twice from the same starts: as the run
was trained, and with the other setting of `task.clamp_observed` (the observed entries fixed in
every answer, so descent only completes the rest). Clamping at inference alone needs no
retraining; a run trained with clamping (`task.clamp_observed=true`) shows what training for it
adds. The error is the MSE over all entries (the observed ones contribute 0 when clamped) and over
the unobserved entries alone.

    irem-train experiment=irem_lowrank trainer.iterations=2000 threads=1 hydra.run.dir=runs/lowrank
    irem-train experiment=irem_lowrank task.clamp_observed=true trainer.iterations=2000 threads=1 \\
        hydra.run.dir=runs/lowrank-clamped
    python benchmarks/lowrank_clamp.py --run-dir runs/lowrank --run-dir runs/lowrank-clamped

Each training takes about 15 minutes on one core. The last line is key=value pairs: the 80-step
test and harder MSE of the first run unclamped and clamped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import open_dict

from irem.build import build_model, build_task, load_run
from irem.problem import per_instance_mean
from irem.seeds import eval_generator

TRAIN_HINT = (
    "irem-train experiment=irem_lowrank trainer.iterations=2000 threads=1 hydra.run.dir={run}   "
    "# about 15 minutes on one core (add task.clamp_observed=true for a run trained with clamping)"
)


def errors(run_dir: Path, clamp: bool, budget: int, seed: int) -> dict[str, tuple[float, float]]:
    """split -> (MSE over all entries, MSE over the unobserved entries) after `budget` steps."""
    _, saved, _, trained = load_run(run_dir)
    with open_dict(saved):
        saved.task.clamp_observed = clamp
    task = build_task(saved.task)
    model = build_model(saved, task)
    model.load_state_dict(trained.state_dict())
    model.eval()
    out = {}
    for split in ("test", "harder"):
        problem = task.split(split)
        y = model.predict(task, problem, [budget], eval_generator(seed, split)).answers[str(budget)]
        hidden = 1.0 - problem.info["mask"]
        sq = (y.detach() - problem.target) ** 2
        out[split] = (
            float(sq.mean()),
            float((per_instance_mean(sq * hidden, None, len(problem)) / hidden.mean(1)).mean()),
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, action="append", required=True, help="a trained lowrank run (repeatable)")
    p.add_argument("--budget", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.run_dir:
        if not (run / "checkpoints" / "last.pt").is_file():
            print(f"No trained run at {run}. Train it first:\n  {TRAIN_HINT.format(run=run)}", file=sys.stderr)
            raise SystemExit(2)
    print(f"{'run':<28}{'trained clamped':>16}{'eval clamped':>14}{'split':>8}{'mse all':>12}{'mse hidden':>12}")
    first = {}
    for i, run in enumerate(args.run_dir):
        _, saved, _, _ = load_run(run)
        trained_clamped = bool(saved.task.get("clamp_observed", False))
        for clamp in (False, True):
            for split, (all_, hidden) in errors(run, clamp, args.budget, args.seed).items():
                print(f"{run.name:<28}{trained_clamped!s:>16}{clamp!s:>14}{split:>8}{all_:>12.5f}{hidden:>12.5f}")
                if i == 0:
                    first[(split, clamp)] = all_
    print(
        f"test_mse={first[('test', False)]:.5f} test_mse_clamped={first[('test', True)]:.5f} "
        f"harder_mse={first[('harder', False)]:.5f} harder_mse_clamped={first[('harder', True)]:.5f}"
    )


if __name__ == "__main__":
    main()
