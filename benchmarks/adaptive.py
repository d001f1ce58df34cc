"""Adaptive halting against a fixed 80-step descent on mixed-difficulty matrix inverse.

The test set draws the diagonal shift c log-uniformly in [--c-min, --c-max] (default 1..50:
condition numbers ~2..56, a factor of ~30, printed; three quarters of the instances below 20, a
workload where most problems are easy and a few are hard). Both solvers descend the same trained
energy from the same starts, with the same descent: the model's own GradientDescent (its trained
step size), with the inference settings --momentum and --accept-if-lower applied to both (and to
the graph energy's descent):

  fixed     that descent for 80 steps;
  adaptive  solvers/adaptive.py around it: each instance stops when its gradient norm has fallen
            under --grad-tol times its value after step 1 (GradNorm, relative; --rule grad_norm,
            the default) or when its energy has changed by less than --tol times its first step's
            change on --patience consecutive steps (EnergyPlateau, --rule plateau); stopped
            instances leave the batch.

The defaults momentum 0.2 and grad-tol 5e-3 were chosen for the 4000-iteration preset on a draw
with --seed 1 (the setting meeting all three targets with the widest error margin), and
docs/results/adaptive.md reports --seed 0, which that choice never saw. The energy, accept-if-lower
and the momentum option itself were chosen earlier, partly on --seed 0 with the 2000-iteration model.

Reported: MSE of each (adaptive/fixed ratio), wall-clock of each (median of --repeats
interleaved runs, ratio), and the Spearman rank correlation between an instance's condition
number and the steps the adaptive solver used on it, plus steps used per condition-number band.

A control runs the same halting rule on the exact quadratic energy of the inverse,
E(A, Y) = 1/2 tr(Y^T A Y) - tr(Y) (minimiser A^-1, gradient AY - I), with step 1/lambda_max:
plain descent on it needs a number of steps that grows with cond(A), so it shows what the rule
does on a landscape whose curvature carries the difficulty. It is a reference, not a learned model.

The trained model comes from --run-dir (an irem-train run directory); without one the script
prints the command that trains `experiment=irem_inverse_adaptive` (the matrix-product energy on
c in [0.5, 20], about 50 minutes on one core) and exits.

    irem-train experiment=irem_inverse_adaptive threads=1 hydra.run.dir=runs/adaptive-inverse
    python benchmarks/adaptive.py --run-dir runs/adaptive-inverse
    python benchmarks/adaptive.py --run-dir runs/repro/inverse-energy --c-min 0.05 --c-max 1 \
        --momentum 0 --no-accept-if-lower --rule plateau --grad-tol 1e-2      # the plain MLP energy
    python benchmarks/adaptive.py --run-dir runs/adaptive-inverse --graph-run-dir runs/graph/shortest_path-energy

With --graph-run-dir the same comparison runs on a trained graph energy over graphs of several
sizes (node count as the difficulty) and prints `graph: mse_ratio=... wallclock_ratio=... spearman=...`.

An oracle line says what any halting rule could at best do on the learned energy: the fewest steps
that keep each instance within 2% (5%, 20%) of its own 80-step MSE, and their rank correlation with
the condition number.

Last line: mse_ratio=<adaptive/fixed> wallclock_ratio=<adaptive/fixed> spearman=<rho>, for the
learned inverse energy and --rule.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy  # noqa: E402

configure_wait_policy()

import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from torch import Tensor  # noqa: E402

from irem import build  # noqa: E402
from irem.checkpoint import run_checkpoint  # noqa: E402
from irem.energy import EnergyFunction  # noqa: E402
from irem.seeds import eval_generator  # noqa: E402
from irem.solver import Solver  # noqa: E402
from irem.solver_settings import apply_solver_settings  # noqa: E402
from irem.solvers.adaptive import AdaptiveDescent  # noqa: E402
from irem.solvers.gradient_descent import GradientDescent  # noqa: E402
from irem.solvers.halting import EnergyPlateau, GradNorm  # noqa: E402


class InverseQuadratic(EnergyFunction):
    """1/2 tr(Y^T A Y) - tr(Y) per instance: convex for SPD A, minimised at A^-1."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        n = y.shape[0]
        a = x.reshape(n, self.size, self.size)
        yy = y.reshape(n, self.size, self.size)
        return 0.5 * (yy * (a @ yy)).sum((1, 2)) - yy.diagonal(dim1=1, dim2=2).sum(1)


def load_run(run_dir: Path, args: argparse.Namespace):
    """A trained run, its solver given the benchmark's inference settings (for the fixed and the
    adaptive solver alike)."""
    _, _, task, model = build.load_run(run_dir)
    model.eval()
    model.solver = apply_solver_settings(
        model.solver, {"momentum": args.momentum, "accept_if_lower": args.accept_if_lower, "restart": args.restart}
    )
    return task, model


def graph_study(args: argparse.Namespace) -> tuple[float, float, float]:
    """The same comparison on a trained graph energy, graph size (node count) as the difficulty."""
    task, model = load_run(args.graph_run_dir, args)
    if not hasattr(task, "family"):  # graph tasks draw from a graph family
        raise SystemExit(f"{args.graph_run_dir} holds a model for task '{task.name}', not a graph task.")
    g = eval_generator(args.seed, "benchmarks/adaptive")  # never the trainer's stream
    sizes = torch.tensor(args.graph_sizes, dtype=torch.float32).repeat_interleave(args.graph_n)
    problem = task.generate(sizes.numel(), sizes, g)
    y0 = task.init_answer(problem, g)
    print(
        f"graph model {args.graph_run_dir}: {problem.num_instances} {task.name} graphs, "
        f"{args.graph_n} at each of {args.graph_sizes} nodes, {problem.segment.numel()} answer rows"
    )
    return compare("learned GNN energy", task, model.energy, model.solver, 80, args.rule, args, problem, y0)


def trained_model(args: argparse.Namespace):
    run_dir = args.run_dir
    if run_dir is None or not run_checkpoint(run_dir).is_file():
        raise SystemExit(
            f"No trained run at {run_dir or '--run-dir'}. Train one first (about 50 minutes on one core):\n"
            f"  irem-train experiment=irem_inverse_adaptive trainer.iterations={args.train_iterations} "
            f"threads={args.threads} hydra.run.dir=runs/adaptive-inverse\n"
            "then: python benchmarks/adaptive.py --run-dir runs/adaptive-inverse"
        )
    task, model = load_run(run_dir, args)
    if task.name != "inverse":
        raise SystemExit(f"{run_dir} holds a model for task '{task.name}'; this benchmark needs 'inverse'.")
    return task, model, run_dir


def timed_solves(
    energy: EnergyFunction,
    solvers: dict[str, tuple[Solver, int]],
    x: Tensor,
    y0: Tensor,
    repeats: int,
    segment: Tensor | None = None,
) -> tuple[dict[str, object], dict[str, float]]:
    """Median wall-clock of each solver over `repeats` rounds, run in turn within each round."""
    times: dict[str, list[float]] = {k: [] for k in solvers}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, (solver, budget) in solvers.items():
            t0 = time.perf_counter()
            results[name] = solver.solve(energy, x, y0, budget=budget, segment=segment)
            times[name].append(time.perf_counter() - t0)
    return results, {k: statistics.median(v) for k, v in times.items()}


def by_band(cond: Tensor, steps: Tensor, bands: int = 4) -> str:
    edges = torch.quantile(cond.double(), torch.linspace(0, 1, bands + 1, dtype=torch.float64))
    parts = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (cond >= lo) & (cond <= hi)
        parts.append(f"{lo:.0f}-{hi:.0f}: {steps[inside].float().mean():.1f}")
    return "; ".join(parts)


RULES = {
    "plateau": lambda args: EnergyPlateau(args.tol, args.patience),
    "grad_norm": lambda args: GradNorm(args.grad_tol, relative=True),
}


def oracle(task, energy: EnergyFunction, gd: GradientDescent, max_steps: int, problem, y0) -> None:
    """What any halting rule could at best achieve on this energy: for each instance, the first step
    whose MSE is within 2% (5%, 20%) of its own `max_steps` MSE, i.e. the fewest steps a rule that knew
    the answer could stop at while keeping the fixed solver's error, and its rank correlation with
    difficulty. If this is not positive, no rule reading the energy can be both accurate and
    difficulty-tracking: the landscape itself does not make harder instances take longer."""
    with torch.no_grad():
        res = gd.solve(energy, problem.x, y0, budget=max_steps, snapshots=range(max_steps + 1))
    mse = torch.stack([task.loss(problem, res.snapshots[t]) for t in range(max_steps + 1)])
    final = mse[-1]
    rho_error = float(spearmanr(problem.difficulty.numpy(), final.numpy()).correlation)
    parts = []
    for frac in (0.02, 0.05, 0.2):
        need = (mse <= final * (1 + frac)).float().argmax(0)  # the first step within frac of the final MSE
        rho = float(spearmanr(problem.difficulty.numpy(), need.numpy()).correlation)
        parts.append(f"within {frac:.0%}: mean {need.float().mean():.1f} steps, Spearman {rho:.3f}")
    print(f"[oracle halting on the learned energy] Spearman(difficulty, {max_steps}-step MSE) {rho_error:.3f}")
    print("    fewest steps keeping each instance's own error: " + "; ".join(parts), flush=True)


def compare(
    label: str, task, energy: EnergyFunction, gd: GradientDescent, max_steps: int, rule: str, args, problem, y0
) -> tuple[float, float, float]:
    """Fixed `max_steps` of `gd` against the adaptive solver with `rule`, capped at the same."""
    adaptive = AdaptiveDescent(gd, rules=[RULES[rule](args)], max_steps=max_steps)
    with torch.no_grad():
        res, secs = timed_solves(
            energy,
            {"fixed": (gd, max_steps), "adaptive": (adaptive, max_steps)},
            problem.x,
            y0,
            args.repeats,
            problem.segment,
        )
    mse = {k: float(task.loss(problem, r.y).mean()) for k, r in res.items()}  # mean of per-instance MSE
    steps = res["adaptive"].steps
    rho = float(spearmanr(problem.difficulty.numpy(), steps.numpy()).correlation)
    print(
        f"[{label}, {rule}] fixed {max_steps} steps: MSE {mse['fixed']:.5f} in {secs['fixed']:.3f} s | adaptive: "
        f"MSE {mse['adaptive']:.5f} in {secs['adaptive']:.3f} s, steps mean {steps.float().mean():.1f} "
        f"(min {int(steps.min())}, max {int(steps.max())}) | Spearman(difficulty, steps) {rho:.3f}"
    )
    print(f"    mean steps used by difficulty quartile: {by_band(problem.difficulty, steps)}", flush=True)
    return mse["adaptive"] / mse["fixed"], secs["adaptive"] / secs["fixed"], rho


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--train-iterations", type=int, default=4000)
    parser.add_argument("--n", type=int, default=1000, help="test instances")
    parser.add_argument("--c-min", type=float, default=1.0)
    parser.add_argument("--c-max", type=float, default=50.0)
    parser.add_argument("--momentum", type=float, default=0.2, help="heavy-ball momentum of both solvers")
    parser.add_argument(
        "--accept-if-lower", action=argparse.BooleanOptionalAction, default=True, help="for both solvers"
    )
    parser.add_argument(
        "--restart", action=argparse.BooleanOptionalAction, default=False, help="gradient restart of the momentum"
    )
    parser.add_argument("--rule", choices=tuple(RULES), default="grad_norm", help="the rule the last line reports")
    parser.add_argument("--tol", type=float, default=1e-3, help="plateau: energy change / first step's change")
    parser.add_argument("--grad-tol", type=float, default=5e-3, help="grad_norm: norm / norm after step 1")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--graph-run-dir", type=Path, default=None, help="also study a trained graph energy")
    parser.add_argument("--graph-sizes", type=int, nargs="+", default=[10, 15, 20, 30, 50])
    parser.add_argument("--graph-n", type=int, default=40, help="graphs per size")
    parser.add_argument("--control-steps", type=int, default=3000, help="cap for the exact-quadratic control")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if not 0 < args.c_min < args.c_max:
        raise SystemExit(f"need 0 < --c-min < --c-max, got {args.c_min}, {args.c_max}")
    task, model, run_dir = trained_model(args)
    g = eval_generator(args.seed, "benchmarks/adaptive")  # never the trainer's stream
    c = torch.exp(torch.empty(args.n).uniform_(math.log(args.c_min), math.log(args.c_max), generator=g))
    problem = task.generate(args.n, c, g)
    y0 = task.init_answer(problem, g)
    cond = problem.difficulty
    spread = float(cond.max() / cond.min())
    print(
        f"model {run_dir}; {args.n} inverse instances, c log-uniform in [{args.c_min}, {args.c_max}]: "
        f"condition number {float(cond.min()):.0f}..{float(cond.max()):.0f} (spread x{spread:.1f}); "
        f"threads={torch.get_num_threads()}; descent: step {float(model.solver.step_size.detach()):.3g}, "
        f"momentum {args.momentum}, restart {args.restart}, accept-if-lower {args.accept_if_lower}"
    )

    a = problem.x.reshape(args.n, task.size, task.size).double()
    lam_max = float(torch.linalg.eigvalsh(a)[:, -1].max())
    exact = GradientDescent(step_size=1.0 / lam_max)
    for rule in RULES:
        compare(
            "exact quadratic (control)",
            task,
            InverseQuadratic(task.size),
            exact,
            args.control_steps,
            rule,
            args,
            problem,
            y0,
        )
    results = {
        rule: compare("learned energy", task, model.energy, model.solver, 80, rule, args, problem, y0) for rule in RULES
    }
    oracle(task, model.energy, model.solver, 80, problem, y0)
    if args.graph_run_dir is not None:
        graph = graph_study(args)
        print(f"graph: mse_ratio={graph[0]:.4f} wallclock_ratio={graph[1]:.3f} spearman={graph[2]:.3f}")
    mse_ratio, wall_ratio, rho = results[args.rule]
    print(f"mse_ratio={mse_ratio:.4f} wallclock_ratio={wall_ratio:.3f} spearman={rho:.3f}")


if __name__ == "__main__":
    main()
