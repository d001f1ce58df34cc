"""Sudoku: the energies and baselines of the sudoku_* presets, compared per band and step budget.

It trains nothing. It evaluates four runs, each trained for the same wall-clock (30 minutes on one
core) on the same puzzle stream (fresh unique puzzles at 30-45 givens):

    irem-train experiment=sudoku_conv threads=1 hydra.run.dir=runs/sudoku/conv
    irem-train experiment=sudoku_graph threads=1 hydra.run.dir=runs/sudoku/graph
    irem-train experiment=sudoku_rrn threads=1 hydra.run.dir=runs/sudoku/rrn
    irem-train experiment=sudoku_feedforward threads=1 hydra.run.dir=runs/sudoku/feedforward
    python benchmarks/sudoku.py --runs runs/sudoku

and prints, for --instances puzzles of each fixed split (test: 30-45 givens, harder: 24-29,
hardest: minimal puzzles, 21-29), board accuracy (a valid grid that keeps every given) and cell
accuracy (blank cells equal to the solution) at every budget (descent steps for the energies,
message-passing steps for the RRN; the feed-forward net answers once). Then, for the best energy
model (highest test board accuracy at its largest budget):

- time: ms per puzzle of its solve at the largest budget and of the reference solver
  (tasks/sudoku_boards.solve, exact search) on the same test puzzles, median of --repeats
  interleaved runs;
- compute follows difficulty: an energy-based halting rule (no verifier) on a mixed set of test,
  harder and hardest puzzles, its Spearman correlation between fewer givens and more steps, and its
  board accuracy against fixed descent at the largest budget;
- verification and search, labelled apart: halting when the board verifies (uses the task's check),
  best-of-N picked by lowest energy (no check), restarts until a verified board (uses the check),
  each with its board accuracy on the test and harder splits and its compute in energy evaluations
  (forward and gradient) per puzzle;
- a picture of a few harder boards (givens black, predicted digits blue, wrong red).

The last line is key=value pairs.
"""

# ruff: noqa: E402  (the OpenMP wait policy is set before torch is imported, as in irem/cli.py)
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from irem.openmp import configure_wait_policy

configure_wait_policy()

import torch
from scipy.stats import spearmanr

from irem.build import load_run
from irem.checkpoint import run_checkpoint
from irem.problem import Problem
from irem.seeds import eval_generator
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.best_of_n import BestOfN
from irem.solvers.halting import EnergyPlateau, Verified
from irem.tasks import sudoku_boards as boards
from irem.tasks.sudoku import Sudoku, puzzles_of
from irem.tasks.sudoku_pictures import draw_boards

MODELS = {"conv": "sudoku_conv", "graph": "sudoku_graph", "rrn": "sudoku_rrn", "feedforward": "sudoku_feedforward"}
ENERGIES = ("conv", "graph")
BANDS = ("test", "harder", "hardest")


def first(problem: Problem, n: int) -> Problem:
    return problem.select(torch.arange(min(n, problem.num_instances)))


def board_scores(task: Sudoku, problem: Problem, y: torch.Tensor) -> tuple[float, float]:
    m = task.metrics(problem, y)
    return float(m["board_accuracy"].mean()), float(m["cell_accuracy"].mean())


def budgets_of(name: str, args: argparse.Namespace) -> list[int]:
    if name == "feedforward":
        return [1]
    return args.rrn_budgets if name == "rrn" else args.budgets


def accuracy_tables(
    runs: dict[str, tuple], args: argparse.Namespace
) -> dict[tuple[str, str, int], tuple[float, float]]:
    table = {}
    for name, (task, model) in runs.items():
        model.eval()
        for band in BANDS:
            problem = first(task.split(band), args.instances)
            answers = model.predict(task, problem, budgets_of(name, args), eval_generator(args.seed, band)).answers
            for b in budgets_of(name, args):
                table[(name, band, b)] = board_scores(task, problem, answers[str(b)])
    return table


def print_tables(table: dict, runs: dict, args: argparse.Namespace) -> None:
    for metric, k in (("board accuracy", 0), ("cell accuracy", 1)):
        for name in runs:
            budgets = budgets_of(name, args)
            print(f"{name:<12}{metric:<16}" + "".join(f"{'steps ' + str(b):>12}" for b in budgets))
            for band in BANDS:
                print(f"{'':<12}{band:<16}" + "".join(f"{table[(name, band, b)][k]:>12.3f}" for b in budgets))
        print()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs", type=Path, default=Path("runs/sudoku"), help="folder holding conv/, graph/, rrn/, feedforward/"
    )
    parser.add_argument("--instances", type=int, default=200, help="puzzles per split")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40, 80, 160, 320])
    parser.add_argument("--rrn-budgets", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument(
        "--plateau-tol", type=float, default=1e-4, help="the energy-based halting rule's relative tolerance"
    )
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/sudoku/report"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    missing = [name for name in MODELS if not run_checkpoint(args.runs / name).is_file()]
    if missing:
        lines = [f"  irem-train experiment={MODELS[n]} threads=1 hydra.run.dir={args.runs / n}" for n in missing]
        print(
            f"Missing trained runs under {args.runs}: {', '.join(missing)}. Train them first (about 30 minutes each "
            "on one core; two can run side by side on two cores):\n" + "\n".join(lines),
            file=sys.stderr,
        )
        raise SystemExit(2)
    runs = {}
    for name in MODELS:
        _, _, task, model = load_run(args.runs / name)
        runs[name] = (task, model)
        print(f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters")
    table = accuracy_tables(runs, args)
    print_tables(table, runs, args)

    top = args.budgets[-1]
    best = max(ENERGIES, key=lambda n: table[(n, "test", top)][0])
    task, model = runs[best]
    print(f"best energy model: {best} (test board accuracy {table[(best, 'test', top)][0]:.3f} at {top} steps)")

    # time: the best energy's solve against the exact reference solver, same puzzles
    test = first(task.split("test"), args.instances)
    puzzles = puzzles_of(test.x)
    solve_s, ref_s = [], []
    for _ in range(args.repeats):
        solve_s += timed(lambda: model.predict(task, test, [top], eval_generator(args.seed, "time")), 1)
        ref_s += timed(lambda: boards.solve(puzzles, limit=2), 1)
    ms_energy = 1000 * statistics.median(solve_s) / len(test)
    ms_ref = 1000 * statistics.median(ref_s) / len(test)
    print(
        f"time per puzzle: {best} {top} steps {ms_energy:.2f} ms, reference solver {ms_ref:.3f} ms (x{ms_energy / ms_ref:.0f})"
    )

    # compute follows difficulty: energy-based halting on a mixed set
    mixed = Problem.cat([first(task.split(b), args.instances) for b in BANDS])
    trained = model.solver
    fixed_y = model.predict(task, mixed, [top], eval_generator(args.seed, "mixed")).answers[str(top)]
    fixed_acc = board_scores(task, mixed, fixed_y)[0]
    model.solver = AdaptiveDescent(
        trained, rules=[EnergyPlateau(tol=args.plateau_tol, patience=args.patience)], max_steps=top, min_steps=2
    )
    out = model.predict(task, mixed, [top], eval_generator(args.seed, "mixed"))
    adaptive_acc = board_scores(task, mixed, out.answers[str(top)])[0]
    steps = out.info["steps"].float()
    rho = float(spearmanr(-mixed.difficulty.numpy(), steps.numpy()).statistic)
    per_band = {b: float(steps[i * args.instances : (i + 1) * args.instances].mean()) for i, b in enumerate(BANDS)}
    print(
        f"adaptive (energy plateau {args.plateau_tol:g}, no verifier) on {len(mixed)} mixed puzzles: board accuracy "
        f"{adaptive_acc:.3f} against {fixed_acc:.3f} for {top} fixed steps, mean steps "
        + ", ".join(f"{b} {v:.1f}" for b, v in per_band.items())
        + f"; Spearman(-givens, steps) {rho:.3f}"
    )

    # verification and search on the test and harder splits, each labelled
    searches = {
        "fixed descent (no check)": trained,
        "halt when verified (uses the check)": AdaptiveDescent(trained, rules=[Verified()], max_steps=top, min_steps=1),
        f"best-of-{args.starts} by lowest energy (no check)": BestOfN(trained, starts=args.starts, max_steps=top),
        f"restarts until verified, {args.starts} starts x {args.restarts + 1} rounds (uses the check)": BestOfN(
            trained, starts=args.starts, restarts=args.restarts, verified=True, max_steps=top
        ),
    }
    search_acc = {}
    searched = {band: first(task.split(band), args.instances) for band in ("test", "harder")}
    for band, problem in searched.items():
        for label, solver in searches.items():
            model.solver = solver
            out = model.predict(task, problem, [top], eval_generator(args.seed, "search"))
            acc = board_scores(task, problem, out.answers[str(top)])[0]
            evals = float(out.info["evaluations"].float().mean())
            search_acc[(band, label)] = acc
            print(f"{band}, {label}: board accuracy {acc:.3f}, {evals:.0f} energy evaluations per puzzle")
    model.solver = trained
    best_of_n = f"best-of-{args.starts} by lowest energy (no check)"
    harder = searched["harder"]

    # a picture of a few harder boards
    y = model.predict(task, harder, [top], eval_generator(args.seed, "picture")).answers[str(top)]
    path = draw_boards(
        puzzles_of(harder.x),
        (y.argmax(-1) + 1).to(torch.int8),
        (harder.target + 1).to(torch.int8),
        args.out / "sudoku_harder.png",
        n=12,
    )
    print(f"picture: {path}")

    print(
        f"test_board_acc={table[(best, 'test', top)][0]:.4f} harder_board_acc={table[(best, 'harder', top)][0]:.4f} "
        f"hardest_board_acc={table[(best, 'hardest', top)][0]:.4f} "
        f"rrn_harder_board_acc={max(table[('rrn', 'harder', b)][0] for b in args.rrn_budgets):.4f} "
        f"ff_harder_board_acc={table[('feedforward', 'harder', 1)][0]:.4f} "
        f"test_board_acc_best_of_{args.starts}={search_acc[('test', best_of_n)]:.4f} "
        f"harder_board_acc_best_of_{args.starts}={search_acc[('harder', best_of_n)]:.4f} "
        f"adaptive_spearman={rho:.3f} adaptive_acc_drop={fixed_acc - adaptive_acc:.4f} "
        f"ms_per_puzzle={ms_energy:.2f} reference_ms_per_puzzle={ms_ref:.3f}"
    )


if __name__ == "__main__":
    main()
