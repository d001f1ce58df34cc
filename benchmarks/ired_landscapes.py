"""What each landscape of a trained IRED energy does on held-out data, with a plot.

For every landscape k: the fraction of held-out instances whose noised truth has a lower energy
than its negative (built as objective=ired builds it: the task's corruption, or the descended,
re-noised truth), on landscape k for every instance; and the error of the annealed descent's answer
after each landscape (the solver's own budget spread over the landscapes, smoothest first), on the
test and harder splits. The claim to check: every landscape ranks the truth first, and the error
falls from one landscape to the next (`falls` counts the landscapes after which it improved).

The trained model comes from --run-dir (an irem-train run of an ired_* preset); without one the
script prints the command that trains it and exits 2.

    python benchmarks/ired_landscapes.py --run-dir runs/ired_inverse --plot docs/results/ired_inverse_landscapes.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy  # noqa: E402

configure_wait_policy()

import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from irem import build  # noqa: E402
from irem.checkpoint import run_checkpoint  # noqa: E402
from irem.ired.landscapes import LandscapeSchedule, landscapes_of, spread_budget  # noqa: E402
from irem.ired.objective import IREDObjective, with_fixed  # noqa: E402
from irem.problem import per_row  # noqa: E402
from irem.seeds import eval_generator  # noqa: E402


def ranking(task, model, problem, objective: IREDObjective, seed: int) -> list[float]:
    """Per landscape k: the share of instances with E_k(noised truth) < E_k(noised negative)."""
    energy, K = model.energy, landscapes_of(model.energy)
    schedule = LandscapeSchedule(K)
    y_star = task.target_answer(problem).float()
    out = []
    for k in range(K):
        g = torch.Generator().manual_seed(seed + k)
        ks = torch.full((problem.num_instances,), k, dtype=torch.long)
        signal = per_row(schedule.signal(ks), y_star, problem.segment)
        sigma = per_row(schedule.noise(ks), y_star, problem.segment)
        x = energy.prepare(problem.x)
        eps = torch.randn(y_star.shape, generator=g)
        with torch.no_grad():
            positive = with_fixed(signal * y_star + sigma * eps, problem.constraint, signal)
        negative = objective.negative(task, energy, x, problem, y_star, ks, schedule, eps, g)
        with torch.no_grad():
            negative = with_fixed(signal * negative + sigma * eps, problem.constraint, signal)
            out.append(float((energy.energy(x, positive, ks) < energy.energy(x, negative, ks)).float().mean()))
    return out


def error_by_landscape(task, model, problem, seed: int, metric: str) -> list[float]:
    """The task's `metric` after each landscape of one annealed solve (smoothest first)."""
    solver, K = model.solver, landscapes_of(model.energy)
    shares = spread_budget(solver.max_steps, K)
    ends, done = [], 0
    for k in reversed(range(K)):
        done += shares[k]
        ends.append(done)
    y0 = task.init_answer(problem, eval_generator(seed, "landscapes"))
    result = solver.solve(
        model.energy, problem.x, y0, segment=problem.segment, constraint=problem.constraint, snapshots=ends
    )
    return [float(task.metrics(problem, result.snapshots[e])[metric].mean()) for e in ends]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--n", type=int, default=500, help="held-out instances per split")
    parser.add_argument("--plot", type=Path, default=None, help="where to write the PNG")
    parser.add_argument("--metric", default=None, help="a metric of the task (default: its error_metric)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run_dir is None or not run_checkpoint(args.run_dir).is_file():
        raise SystemExit(
            f"No trained run at {args.run_dir or '--run-dir'}. Train one first, e.g. (10 minutes on one core):\n"
            "  irem-train experiment=ired_inverse trainer.time_limit=600 trainer.iterations=100000 trainer.lr=1e-3 "
            "hydra.run.dir=runs/ired_inverse\n"
            "then: python benchmarks/ired_landscapes.py --run-dir runs/ired_inverse"
        )
    _, cfg, task, model = build.load_run(args.run_dir)
    model.eval()
    K = landscapes_of(model.energy)
    if K == 0 or not getattr(model.solver, "landscape_solver", False):
        raise SystemExit(f"{args.run_dir} holds no IRED model (its energy has no landscapes); train an ired_* preset.")
    metric = args.metric or task.error_metric
    objective = IREDObjective(**{k: v for k, v in cfg.objective.items() if k != "_target_"})
    rows = {}
    for split in ("test", "harder"):
        problem = task.split(split).select(torch.arange(min(args.n, task.split(split).num_instances)))
        rows[split] = error_by_landscape(task, model, problem, args.seed, metric)
    ranked = ranking(
        task, model, task.split("test").select(torch.arange(min(args.n, task.test_size))), objective, args.seed
    )

    print(f"{args.run_dir}: task {task.name}, {K} landscapes, solver budget {model.solver.max_steps} steps")
    print("landscape (smoothest first) " + " ".join(f"{k:>7d}" for k in reversed(range(K))))
    for split, errors in rows.items():
        print(f"{metric} after it, {split:6s} " + " ".join(f"{e:7.4f}" for e in errors))
    print("truth ranked first (test)    " + " ".join(f"{ranked[k]:7.3f}" for k in reversed(range(K))))
    better = (lambda a, b: b > a) if metric in task.higher_is_better else (lambda a, b: b < a)
    falls = {s: sum(better(a, b) for a, b in zip(e, e[1:], strict=False)) for s, e in rows.items()}
    if args.plot is not None:
        fig = Figure(figsize=(9, 3.6))
        FigureCanvasAgg(fig)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        order = list(reversed(range(K)))
        for split, errors in rows.items():
            left.plot(range(K), errors, marker="o", label=split)
        left.set_xticks(range(K), [str(k) for k in order])
        left.set_xlabel("landscape reached (smoothest first)")
        left.set_ylabel(f"{metric} of the answer")
        if metric not in task.higher_is_better and all(e > 0 for r in rows.values() for e in r):
            left.set_yscale("log")
        left.legend()
        right.bar(range(K), [ranked[k] for k in order], color="tab:green")
        right.axhline(0.5, color="0.5", linestyle=":")
        right.set_xticks(range(K), [str(k) for k in order])
        right.set_ylim(0, 1)
        right.set_xlabel("landscape")
        right.set_ylabel("truth ranked below its negative")
        fig.suptitle(f"IRED on {task.name}: {args.run_dir.name}")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    print(
        f"ranked_min={min(ranked):.3f} ranked_mean={sum(ranked) / K:.3f} "
        + " ".join(f"{s}_first={e[0]:.4g} {s}_last={e[-1]:.4g} {s}_falls={falls[s]}/{K - 1}" for s, e in rows.items())
    )


if __name__ == "__main__":
    main()
