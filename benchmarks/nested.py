"""Nested reasoning: composed energies against end-to-end and composed feed-forward baselines, depth 1..6.

For each nested task (tasks/nested.py: repeated addition, alternating addition and inverse, staged
shortest paths) it loads the trained sub-models (irem-train run dirs; a missing one is trained
briefly here), trains the end-to-end feed-forward baseline on the composite task at depths 1-2 only
(`experiment=nested_end_to_end`, reused when already trained), and on fresh seeded problems at every
depth measures the relative MSE (MSE / MSE of predicting zero, since answers change scale with
depth) of:

- sequential composition: each node descends its own sub-energy `--node-budget` steps, in order;
- joint composition: one descent of the summed energy over every node's answer (GradientDescent at
  the sub-models' trained step size) for depth x node-budget steps, with the outer energies'
  gradient flowing into their inputs (input_grad 1), the same with accept-if-lower steps (so the
  energy really falls), at --small-step times the trained step (each answer sits in two energies,
  so the summed landscape is steeper than either), and without the gradient into inputs
  (input_grad 0);
- the composed feed-forward baseline (the trained feed-forward sub-models applied in sequence);
- the end-to-end feed-forward baseline;
- a diagnostic: the last node alone, its sub-energy given the exact inner answers.

Then, per depth, what a step costs and how many steps each solve needs: sequential solves are rerun
at per-node budgets 1, 2, 5, 10, 20, 40 (steps = depth x budget) and the joint solves snapshot up to
40 x depth steps; "steps to converge" is the fewest steps whose error is within 5% of the lowest the
solve reaches. Also the composed energy at the exact answers against at the joint answer.

    python benchmarks/nested.py                                  # ~15 min on one core
    python benchmarks/nested.py --tasks addition --instances 100 --e2e-iterations 1000

Prints the tables; the last line is key=value pairs. Writes <out>/nested.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from irem.build import load_run
from irem.checkpoint import run_checkpoint
from irem.composition import (
    ComposedEnergy,
    ComposedInput,
    ComposedPredictor,
    Plan,
    freeze,
    load_slot,
    model_dims,
    run_plan,
    solve_joint,
    solve_sequential,
)
from irem.predictor import Predictor
from irem.problem import Problem
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.nested import NestedAddition, NestedInverse, NestedShortestPath, NestedTask

IREM_TRAIN = str(Path(sys.executable).with_name("irem-train"))
NODE_BUDGETS = (1, 2, 5, 10, 20, 40)
JOINT_GRID = (1, 2, 5, 10, 20, 30, 40, 60, 80, 120, 160, 200, 240)
WITHIN = 1.05  # "converged": error within 5% of the lowest the solve reaches

# Sub-model runs: argument -> (default run dir, irem-train overrides that train a short one if it is missing).
RUNS = {
    "addition_energy": ("runs/repro/addition-energy", ["experiment=irem_addition"]),
    "inverse_energy": ("runs/repro/inverse-energy", ["experiment=irem_inverse"]),
    "sp_energy": ("runs/graph/shortest_path-energy", ["experiment=irem_graph_shortest_path", "trainer.batch_size=128"]),
    "addition_ff": ("runs/repro/addition-feedforward", ["experiment=irem_addition", "baseline=feedforward"]),
    "inverse_ff": ("runs/repro/inverse-feedforward", ["experiment=irem_inverse", "baseline=feedforward"]),
    "sp_ff": (
        "runs/graph/shortest_path-gnn_feedforward",
        ["experiment=irem_graph_shortest_path", "trainer.batch_size=128", "baseline=gnn_feedforward"],
    ),
}
# Per task: slot -> the run argument that fills it, for the energies and for the feed-forward baseline.
SUBS = {
    "addition": {"add": "addition_energy"},
    "inverse": {"add": "addition_energy", "inv": "inverse_energy"},
    "shortest_path": {"sp": "sp_energy"},
}
FEEDFORWARD = {
    "addition": {"add": "addition_ff"},
    "inverse": {"add": "addition_ff", "inv": "inverse_ff"},
    "shortest_path": {"sp": "sp_ff"},
}
TASKS: dict[str, Callable[[], NestedTask]] = {
    "addition": lambda: NestedAddition(test_size=16, val_size=16),
    "inverse": lambda: NestedInverse(test_size=16, val_size=16),
    "shortest_path": lambda: NestedShortestPath(test_size=16, val_size=16),
}


def irem_train(run_dir: Path, overrides: list[str], iterations: int, threads: int) -> float:
    """Train (or finish) an irem-train run; returns its training seconds."""
    summary = run_dir / "train_summary.json"
    if summary.exists() and json.loads(summary.read_text())["iterations"] >= iterations:
        return float(json.loads(summary.read_text())["train_seconds"])
    cmd = [
        IREM_TRAIN,
        *overrides,
        f"trainer.iterations={iterations}",
        f"threads={threads}",
        "trainer.progress=false",
        "eval.run=false",
        f"name={run_dir.name}",
        f"hydra.run.dir={run_dir}",
    ]
    print("training:", " ".join(cmd), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
    return float(json.loads(summary.read_text())["train_seconds"])


def sub_models(task: NestedTask, spec: dict[str, str], args: argparse.Namespace) -> dict[str, Predictor]:
    models = {}
    for slot, arg in spec.items():
        run_dir = Path(getattr(args, arg))
        overrides = RUNS[arg][1]
        if not run_checkpoint(run_dir).exists():
            print(f"{run_dir} has no checkpoint: training a short one ({args.sub_iterations} iterations)")
            irem_train(run_dir, overrides, args.sub_iterations, args.threads)
        models[slot] = load_slot(slot, run_dir, task.slots()[slot])
    return models


def relative(problem: Problem, y: Tensor) -> float:
    """MSE over the whole set divided by the MSE of predicting zero."""
    return float(((y.reshape(problem.target.shape) - problem.target) ** 2).mean() / (problem.target**2).mean())


def converged(errors: dict[int, float]) -> tuple[int, float]:
    """(fewest steps within 5% of the lowest error, the lowest error)."""
    finite = {k: v for k, v in errors.items() if math.isfinite(v)}
    if not finite:
        return -1, math.nan
    best = min(finite.values())
    return min(k for k, v in finite.items() if v <= WITHIN * best), best


def exact_values(task: NestedTask, plan: Plan, problem: Problem) -> dict[str, Tensor]:
    return run_plan(plan, task.parts(problem), problem.x, lambda node, x: task.exact(node.slot)(x))


def last_node_alone(
    task: NestedTask, plan: Plan, models: dict, problem: Problem, budget: int, g: torch.Generator
) -> Tensor:
    """The output node's sub-energy given exact inner answers: its own share of the error."""
    last = plan.nodes[-1]

    def answer(node: Any, x: Any) -> Tensor:
        if node.name != last.name:
            return task.exact(node.slot)(x)
        model = models[node.slot]
        y0 = torch.rand(task.answer_shape(problem)[0], model_dims(model)["y_dim"], generator=g) * 2 - 1
        return model.solver.solve(model.energy, x, y0, budget=budget, segment=problem.segment).y.detach()

    return run_plan(plan, task.parts(problem), problem.x, answer)[last.name]


def energy_widths(models: dict) -> dict[str, int]:
    return {slot: model_dims(m)["y_dim"] for slot, m in models.items()}


def measure_depth(
    task: NestedTask, depth: int, models: dict, ff_models: dict, e2e: Predictor, args: argparse.Namespace, n: int
) -> dict[str, Any]:
    problem = task.generate(n, depth, torch.Generator().manual_seed(10_000 + depth))
    plan = task.plan(depth)
    parts = task.parts(problem)
    out: dict[str, Any] = {"depth": depth, "zero_mse": float((problem.target**2).mean())}

    # sequential, every per-node budget (the error table reads --node-budget)
    seq_err, seq_time = {}, {}
    for b in sorted(set(NODE_BUDGETS) | {args.node_budget}):
        g = torch.Generator().manual_seed(depth)
        start = time.perf_counter()
        answers = solve_sequential(plan, models, parts, problem.x, b, g, problem.segment)
        seq_time[b] = time.perf_counter() - start
        seq_err[depth * b] = relative(problem, answers[plan.output])
    steps, best = converged(seq_err)
    out["sequential"] = seq_err[depth * args.node_budget]
    out["sequential_ms_per_step"] = 1000 * seq_time[args.node_budget] / (depth * args.node_budget)
    out["sequential_steps_to_converge"], out["sequential_best"] = steps, best
    out["sequential_curve"] = seq_err

    # joint, with and without the gradient into inner answers
    step_size = float(models[plan.nodes[-1].slot].solver.step_size)
    horizon = max(min(40 * depth, JOINT_GRID[-1]), depth * args.node_budget)
    grid = sorted({t for t in JOINT_GRID if t <= horizon} | {depth * b for b in NODE_BUDGETS if depth * b <= horizon})
    truth = exact_values(task, plan, problem)
    variants = (
        ("joint", 1.0, GradientDescent(step_size=step_size)),
        ("joint_accept", 1.0, GradientDescent(step_size=step_size, accept_if_lower=True)),
        ("joint_small_step", 1.0, GradientDescent(step_size=step_size * args.small_step)),
        ("joint_no_input_grad", 0.0, GradientDescent(step_size=step_size)),
    )
    for label, input_grad, solver in variants:
        g = torch.Generator().manual_seed(depth)
        start = time.perf_counter()
        result, energy = solve_joint(
            plan, models, parts, problem.x, solver, horizon, g, problem.segment, input_grad, grid
        )
        seconds = time.perf_counter() - start
        errors = {t: relative(problem, energy.split(result.snapshots[t])[plan.output]) for t in grid}
        steps, best = converged(errors)
        out[label] = errors[depth * args.node_budget]
        out[f"{label}_ms_per_step"] = 1000 * seconds / horizon
        out[f"{label}_steps_to_converge"], out[f"{label}_best"] = steps, best
        out[f"{label}_curve"] = errors
        out[f"energy_{label}"] = float(torch.nanmean(result.energy))
    at_truth = torch.cat([truth[node.name] for node in plan.nodes], dim=-1).float()
    composed = ComposedEnergy(plan, {s: m.energy for s, m in models.items()}, energy_widths(models))
    with torch.no_grad():
        out["energy_at_truth"] = float(composed.energy(ComposedInput(parts, problem.x), at_truth).mean())

    g = torch.Generator().manual_seed(depth)
    out["last_node_alone"] = relative(problem, last_node_alone(task, plan, models, problem, args.node_budget, g))
    composed_ff = ComposedPredictor(ff_models).predict(task, problem, [1], g)
    out["composed_feedforward"] = relative(problem, composed_ff.answers["1"])
    with torch.no_grad():
        out["end_to_end_feedforward"] = relative(problem, e2e.predict(task, problem, [1], g).answers["1"])
    return out


def fmt(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.2e}"


def print_tables(
    name: str, rows: list[dict[str, Any]], e2e_info: dict[str, Any], node_budget: int, small_step: float
) -> None:
    depths = [r["depth"] for r in rows]
    head = f"{'':44}" + "".join(f"{'depth ' + str(d):>10}" for d in depths)
    print(f"\n## {name}: relative MSE (MSE / MSE of predicting zero; 1 = no better than zero)")
    print(head)
    labels = {
        "sequential": f"sequential composition ({node_budget} steps/node)",
        "joint": f"joint composition ({node_budget} x depth steps)",
        "joint_accept": "joint, accept-if-lower (energy never rises)",
        "joint_small_step": f"joint, {small_step:g} x the trained step",
        "joint_no_input_grad": "joint, no gradient into inner answers",
        "composed_feedforward": "composed feed-forward sub-models",
        "end_to_end_feedforward": "end-to-end feed-forward (trained depth 1-2)",
        "last_node_alone": "diagnostic: last node given exact inputs",
    }
    for key, label in labels.items():
        print(f"{label:44}" + "".join(f"{fmt(r[key]):>10}" for r in rows))
    print(f"{'MSE of predicting zero':44}" + "".join(f"{fmt(r['zero_mse']):>10}" for r in rows))
    print(
        f"(end-to-end: {e2e_info['iterations']} iterations in {e2e_info['train_seconds']:.0f} s on depths 1-2; "
        f"{e2e_info['instances']} fresh instances per depth)"
    )
    print(
        f"\n## {name}: ms per descent step, steps to converge (fewest steps within 5% of the solve's lowest error) "
        "and that lowest relative MSE; mean composed energy at the exact answers and where each joint solve ended"
    )
    solves = (
        ("sequential", "seq"),
        ("joint", "joint"),
        ("joint_accept", "accept"),
        ("joint_small_step", "small"),
        ("joint_no_input_grad", "no-grad"),
    )
    print(
        f"{'depth':>5} | "
        + " | ".join(f"{short + ' ms':>10} {'steps':>5} {'best':>8}" for _, short in solves)
        + f" | {'E(truth)':>9} {'E(joint)':>9} {'E(accept)':>9}"
    )
    for r in rows:
        cells = [
            f"{r[key + '_ms_per_step']:>10.2f} {r[key + '_steps_to_converge']:>5} {fmt(r[key + '_best']):>8}"
            for key, _ in solves
        ]
        energies = f"{fmt(r['energy_at_truth']):>9} {fmt(r['energy_joint']):>9} {fmt(r['energy_joint_accept']):>9}"
        print(f"{r['depth']:>5} | " + " | ".join(cells) + " | " + energies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    for arg, (default, _) in RUNS.items():
        parser.add_argument(f"--{arg.replace('_', '-')}", dest=arg, default=default, help="an irem-train run dir")
    parser.add_argument("--out", type=Path, default=Path("runs/nested"), help="end-to-end runs and nested.json")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--instances", type=int, default=200, help="fresh instances per depth (matrix tasks)")
    parser.add_argument("--graph-instances", type=int, default=100, help="fresh graphs per depth")
    parser.add_argument("--node-budget", type=int, default=20, help="descent steps per node (sub-models: best at ~20)")
    parser.add_argument("--e2e-iterations", type=int, default=4000)
    parser.add_argument("--graph-e2e-iterations", type=int, default=1500)
    parser.add_argument("--sub-iterations", type=int, default=1000, help="for a sub-model that has to be trained here")
    parser.add_argument("--small-step", type=float, default=0.2, help="joint at this fraction of the trained step")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.small_step <= 1:
        raise SystemExit(f"--small-step must be in (0, 1], got {args.small_step}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    results: dict[str, Any] = {}
    for name in args.tasks:
        task = TASKS[name]()
        models = sub_models(task, SUBS[name], args)
        ff_models = sub_models(task, FEEDFORWARD[name], args)
        graph = name == "shortest_path"
        iterations = args.graph_e2e_iterations if graph else args.e2e_iterations
        e2e_dir = args.out / f"{task.name}-end_to_end"
        overrides = ["experiment=nested_end_to_end", f"task={task.name}"]
        if graph:
            overrides.append("baseline=gnn_feedforward")
        train_seconds = irem_train(e2e_dir, overrides, iterations, args.threads)
        e2e = freeze(load_run(e2e_dir)[3])
        n = args.graph_instances if graph else args.instances
        rows = []
        for depth in args.depths:
            t0 = time.perf_counter()
            rows.append(measure_depth(task, depth, models, ff_models, e2e, args, n))
            print(f"{name} depth {depth}: {time.perf_counter() - t0:.1f}s", flush=True)
        info = {"iterations": iterations, "train_seconds": train_seconds, "instances": n}
        results[name] = {"end_to_end": info, "depths": rows}
        print_tables(name, rows, info, args.node_budget, args.small_step)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nested.json").write_text(json.dumps(results, indent=1, default=str))
    pairs = {}
    for name, res in results.items():
        for r in res["depths"]:
            if r["depth"] in (1, 2, 3, 6):
                for key, short in (
                    ("sequential", "seq"),
                    ("joint", "joint"),
                    ("joint_accept", "accept"),
                    ("joint_small_step", "small"),
                    ("composed_feedforward", "ffcomp"),
                    ("end_to_end_feedforward", "e2e"),
                ):
                    pairs[f"{name}_{short}_d{r['depth']}"] = f"{r[key]:.4g}"
        deepest = res["depths"][-1]
        pairs[f"{name}_joint_vs_seq_step_cost_d{deepest['depth']}"] = (
            f"{deepest['joint_ms_per_step'] / deepest['sequential_ms_per_step']:.3g}"
        )
        pairs[f"{name}_e2e_train_s"] = f"{res['end_to_end']['train_seconds']:.0f}"
    pairs["total_s"] = f"{time.perf_counter() - started:.0f}"
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
