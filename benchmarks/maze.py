"""Mazes trained small and solved large: the maze_* presets by size and step budget.

It trains nothing. It evaluates five runs, trained on the same maze stream (fresh DFS mazes of size
9, 11 or 13, one size per batch) for the wall-clock their presets give (30 minutes on one core):

    irem-train experiment=maze_conv threads=1 hydra.run.dir=runs/maze/conv
    irem-train experiment=maze_graph threads=1 hydra.run.dir=runs/maze/graph
    irem-train experiment=maze_ired threads=1 hydra.run.dir=runs/maze/ired
    irem-train experiment=maze_dt_net threads=1 hydra.run.dir=runs/maze/dt_net
    irem-train experiment=maze_feedforward threads=1 hydra.run.dir=runs/maze/feedforward
    python benchmarks/maze.py --runs runs/maze

and prints, for the first --instances mazes of each size's fixed split (size 9 is the `test` split,
the others `size_<N>`; --instances-large for sizes from 39 up, where one solve costs the most), the
exact-path accuracy (every pixel right) at every budget: descent steps for the energies, iterations
for DT-net (past the 30 it was trained with), one pass for the feed-forward net. The best energy is
the one with the highest accuracy at the training size.

IRED's annealed descent spreads a budget over its landscapes and so solves each budget on its own:
it gets fewer budgets (--ired-budgets). Then:

- compute follows difficulty: for the better of the two plain-descent energies (conv, graph), an
  energy-based halting rule (relative energy plateau, no verifier) on the same mazes of every size,
  started where fixed descent started: Spearman(size, steps used) over the mixed set, steps per
  size, and its accuracy against fixed descent at the largest budget;
- pictures: the predicted path over the truth at a few sizes and budgets (maze_paths.png) and
  accuracy against budget per size for every model (maze_accuracy.png, also in TensorBoard under
  <out>/tb);
- data against compute: mazes generated per second at the training sizes against one training
  step's time (train_summary.json);
- cost (also alone: `python benchmarks/maze.py --step-cost`, no runs needed): one descent step of
  the conv energy (forward and gradient in y) per grid cell at sizes 9 to 59, batches of about
  --cells cells, and per_cell_spread, the largest over the smallest.

The last line is key=value pairs.
"""

# ruff: noqa: E402  (the OpenMP wait policy is set before torch is imported, as in irem/cli.py)
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from irem.openmp import configure_wait_policy

configure_wait_policy()

import torch
from scipy.stats import spearmanr

from irem.build import build_model, build_task, load_run
from irem.checkpoint import run_checkpoint
from irem.problem import Problem
from irem.seeds import eval_generator
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.halting import EnergyPlateau
from irem.tasks import maze_gen as gen
from irem.tasks.maze import Maze
from irem.tasks.maze_pictures import accuracy_figure, draw_paths

MODELS = {
    "conv": "maze_conv",
    "graph": "maze_graph",
    "ired": "maze_ired",
    "dt_net": "maze_dt_net",
    "feedforward": "maze_feedforward",
}
ENERGIES = ("conv", "graph", "ired")
PRESET_MINUTES = 30


def first(problem: Problem, n: int) -> Problem:
    return problem.select(torch.arange(min(n, problem.num_instances)))


def maze_set(task: Maze, size: int, n: int) -> Problem:
    """The first `n` mazes of the fixed split at `size` (test at the task's own size)."""
    if size == task.size:
        return first(task.split("test"), n)
    if size in task.eval_sizes:
        return first(task.split(f"size_{size}"), n)
    return task.generate(n, float(size), eval_generator(task.split_seed, f"size_{size}"))


def budgets_of(name: str, args: argparse.Namespace) -> list[int]:
    if name == "feedforward":
        return [1]
    return {"dt_net": args.dt_budgets, "ired": args.ired_budgets}.get(name, args.budgets)


def instances_at(size: int, args: argparse.Namespace) -> int:
    return args.instances_large if size >= 39 else args.instances


def accuracy(task: Maze, problem: Problem, y: torch.Tensor) -> torch.Tensor:
    return task.metrics(problem, y)["accuracy"]


def compose_preset(name: str):
    from hydra import compose, initialize_config_dir

    from irem.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}"])


def step_cost(args: argparse.Namespace, energy=None, solver=None) -> tuple[dict[int, float], float]:
    """Seconds per grid cell of one descent step (energy and its gradient in y) of the conv energy."""
    if energy is None:
        cfg = compose_preset("maze_conv")
        task = build_task(cfg.task)
        model = build_model(cfg, task)
        energy, solver = model.energy, model.solver
    task = Maze(test_size=1, val_size=1)
    per_cell = {}
    for size in args.sizes:
        side = task.pixels(size)
        n = max(1, round(args.cells / (side * side)))
        p = task.generate(n, float(size), torch.Generator().manual_seed(0))
        y0 = task.init_answer(p, torch.Generator().manual_seed(1))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            solver.solve(energy, p.x, y0, budget=args.cost_steps, constraint=p.constraint)
            times.append(time.perf_counter() - start)
        per_cell[size] = statistics.median(times) / (args.cost_steps * n * side * side)
    spread = max(per_cell.values()) / min(per_cell.values())
    print(
        f"one descent step of the conv energy per grid cell (batches of about {args.cells} cells, median of {args.repeats}):"
    )
    for size, s in per_cell.items():
        side = task.pixels(size)
        print(f"  size {size:>3} ({side}x{side} cells): {1e6 * s:.3f} us per cell")
    print(f"per_cell_spread={spread:.2f}")
    return per_cell, spread


def generation_speed(task: Maze, batch: int, repeats: int = 5) -> dict[int, float]:
    """Mazes generated per second at each training size, in batches of `batch`."""
    speed = {}
    g = torch.Generator().manual_seed(0)
    for size in task.train_sizes:
        start = time.perf_counter()
        for _ in range(repeats):
            task.generate(batch, float(size), g)
        speed[size] = repeats * batch / (time.perf_counter() - start)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/maze"), help="folder holding one run per model")
    parser.add_argument("--sizes", type=int, nargs="+", default=[9, 13, 19, 29, 39, 59])
    parser.add_argument("--instances", type=int, default=20, help="mazes per size below 39")
    parser.add_argument("--instances-large", type=int, default=8, help="mazes per size from 39 up")
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    parser.add_argument("--dt-budgets", type=int, nargs="+", default=[5, 10, 20, 30, 60, 100, 200, 300])
    parser.add_argument(
        "--ired-budgets", type=int, nargs="+", default=[10, 40, 160], help="IRED's annealed descent solves each apart"
    )
    parser.add_argument("--plateau-tol", type=float, default=1e-3, help="the halting rule's relative tolerance")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--step-cost", action="store_true", help="only time one descent step per grid cell")
    parser.add_argument("--cells", type=int, default=30000, help="grid cells per timed batch")
    parser.add_argument("--cost-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="pictures go here (default <runs>/report)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or args.runs / "report"

    if args.step_cost:
        step_cost(args)
        return

    missing = [name for name in MODELS if not run_checkpoint(args.runs / name).is_file()]
    if missing:
        lines = [f"  irem-train experiment={MODELS[n]} threads=1 hydra.run.dir={args.runs / n}" for n in missing]
        print(
            f"Missing trained runs under {args.runs}: {', '.join(missing)}. Train them first (each preset trains for "
            f"{PRESET_MINUTES} minutes on one core, trainer.time_limit):\n" + "\n".join(lines),
            file=sys.stderr,
        )
        raise SystemExit(2)
    runs = {}
    for name in MODELS:
        _, cfg, task, model = load_run(args.runs / name)
        model.eval()
        summary = json.loads((args.runs / name / "train_summary.json").read_text())
        runs[name] = (task, model, summary)
        print(
            f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, "
            f"{summary['iterations']} iterations in {summary['train_seconds'] / 60:.1f} min"
        )

    # exact-path accuracy per size and budget
    table: dict[str, dict[int, dict[int, float]]] = {}
    answers: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    for name, (task, model, _) in runs.items():
        table[name] = {}
        start = time.perf_counter()
        for size in args.sizes:
            problem = maze_set(task, size, instances_at(size, args))
            pred = model.predict(task, problem, budgets_of(name, args), eval_generator(args.seed, f"size_{size}"))
            answers[(name, size)] = pred.answers
            table[name][size] = {
                b: float(accuracy(task, problem, pred.answers[str(b)]).mean()) for b in budgets_of(name, args)
            }
        print(f"({name} evaluated in {time.perf_counter() - start:.0f} s)")
    for name in runs:
        budgets = budgets_of(name, args)
        print(f"\n{name:<12}{'exact':<8}" + "".join(f"{b:>8}" for b in budgets))
        for size in args.sizes:
            n = instances_at(size, args)
            print(
                f"{'size ' + str(size):<12}{'n=' + str(n):<8}"
                + "".join(f"{table[name][size][b]:>8.3f}" for b in budgets)
            )

    train_size = args.sizes[0]
    best = max(ENERGIES, key=lambda n: max(table[n][train_size].values()))
    top = args.budgets[-1]
    print(f"\nbest energy model: {best} (accuracy {max(table[best][train_size].values()):.3f} at size {train_size})")

    # compute follows difficulty: energy-based halting on the same mazes, from the same starts (the
    # better of the two energies a plain descent runs on; IRED's annealed descent has its own schedule)
    halted = max(("conv", "graph"), key=lambda n: max(table[n][train_size].values()))
    task, model, _ = runs[halted]
    trained = model.solver
    steps_all, sizes_all, adaptive_right, fixed_right = [], [], [], []
    try:
        model.solver = AdaptiveDescent(
            trained, rules=[EnergyPlateau(tol=args.plateau_tol, patience=args.patience)], max_steps=top, min_steps=2
        )
        for size in args.sizes:
            problem = maze_set(task, size, instances_at(size, args))
            pred = model.predict(task, problem, [top], eval_generator(args.seed, f"size_{size}"))
            steps_all.append(pred.info["steps"].float())
            sizes_all.append(torch.full((problem.num_instances,), float(size)))
            adaptive_right.append(accuracy(task, problem, pred.answers[str(top)]))
            fixed_right.append(accuracy(task, problem, answers[(halted, size)][str(top)]))
    finally:
        model.solver = trained
    steps, sizes = torch.cat(steps_all), torch.cat(sizes_all)
    rho = float(spearmanr(sizes.numpy(), steps.numpy()).statistic)
    adaptive_acc, fixed_acc = float(torch.cat(adaptive_right).mean()), float(torch.cat(fixed_right).mean())
    print(
        f"adaptive ({halted}, relative energy plateau {args.plateau_tol:g} for {args.patience} steps, no verifier, "
        f"at most {top} steps) on {len(steps)} mazes of mixed size: mean steps "
        + ", ".join(f"size {s} {float(st.mean()):.1f}" for s, st in zip(args.sizes, steps_all, strict=True))
        + f"; Spearman(size, steps) {rho:.3f}; exact accuracy {adaptive_acc:.3f} against {fixed_acc:.3f} for {top} "
        "fixed steps"
    )

    # pictures
    panels = []
    for size in args.sizes[:: max(1, len(args.sizes) // 3)][:3]:
        problem = maze_set(task, size, 1)
        codes = gen.codes_of(problem.x, task.layout)[0]
        truth = gen.units_from_pixels(problem.target, task.layout)[0].bool()
        for b in (args.budgets[0], args.budgets[len(args.budgets) // 2], top):
            y = answers[(halted, size)][str(b)][:1]
            on = gen.units_from_pixels(task.decode(problem, y), task.layout)[0].bool()
            panels.append((f"{halted}, size {size}, {b} steps", codes, truth, on))
    print(f"pictures: {draw_paths(panels, out / 'maze_paths.png', columns=3)}")
    trained_budgets = {"conv": runs["conv"][1].solver.max_steps, "dt_net": runs["dt_net"][1].max_iters}
    fig = accuracy_figure(table, trained_budgets)
    fig.savefig(out / "maze_accuracy.png", dpi=110)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tb")) as writer:
        writer.add_figure("maze/accuracy_vs_budget", fig)
    print(f"pictures: {out / 'maze_accuracy.png'} (and TensorBoard in {out / 'tb'})")

    # data against compute
    gen_speed = generation_speed(task, batch=32)
    summary = runs["conv"][2]
    ms_step = 1000 * summary["train_seconds"] / max(1, summary["iterations"])
    ms_batch = {s: 1000 * 32 / v for s, v in gen_speed.items()}
    print(
        "maze generation (DFS, batches of 32): "
        + ", ".join(f"size {s} {v:.0f} mazes/s ({ms_batch[s]:.1f} ms a batch)" for s, v in gen_speed.items())
        + f"; one conv-energy training step {ms_step:.0f} ms"
    )

    _, spread = step_cost(args, runs["conv"][1].energy, runs["conv"][1].solver)

    best_59 = max(table[best][max(args.sizes)].values())
    print(
        f"acc_train_size={max(table[best][train_size].values()):.4f} acc_{max(args.sizes)}={best_59:.4f} "
        f"dt_acc_{max(args.sizes)}={max(table['dt_net'][max(args.sizes)].values()):.4f} "
        f"ff_acc_{max(args.sizes)}={table['feedforward'][max(args.sizes)][1]:.4f} "
        f"best_energy={best} adaptive_model={halted} adaptive_spearman={rho:.3f} adaptive_acc_drop={fixed_acc - adaptive_acc:.4f} "
        f"gen_mazes_per_s_{task.train_sizes[-1]}={gen_speed[task.train_sizes[-1]]:.0f} train_ms_per_step={ms_step:.0f} "
        f"per_cell_spread={spread:.2f}"
    )


if __name__ == "__main__":
    main()
