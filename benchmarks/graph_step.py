"""One descent step of the graph energy on sparse graphs of 100, 1k and 10k nodes: time per edge.

Message passing should cost the same per edge whatever the graph size (no dense node x node work
anywhere: energy, gradient, solver bookkeeping). The workload: MST membership on k-nearest-
neighbour geometric graphs (k = `--degree`, symmetrised, so the mean degree is fixed: ~4.9 for k=4),
the GINE energy of configs/energy/gnn.yaml (83k parameters) and one step of
`GradientDescent.solve(budget=1)` (energy + gradient at y0, the update, the energy of the new
iterate), not differentiated, as at evaluation.

Each size is timed on a batch of `--total-nodes` nodes (100 graphs of 100 nodes, 10 of 1k, 1 of
10k by default), so the fixed per-call overhead is the same for every size and the per-edge times
compare the scaling with graph size, not with batch size. Sizes are interleaved over `--rounds`
rounds so each sees the same machine load; the median per size is reported.

The last line is key=value pairs ending with `per_edge_spread=<max/min>` of the per-edge times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from irem.energies.gnn import GNNEnergy
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.graph import MSTMembership


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Per-edge time of one graph-energy descent step vs graph size.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--total-nodes", type=int, default=10000, help="nodes per timed batch, for every size")
    parser.add_argument("--degree", type=float, default=4.0, help="k of the k-nearest-neighbour graphs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task = MSTMembership(family="knn", degree=args.degree, test_size=1, val_size=1)
    energy = GNNEnergy(**task.dims())
    solver = GradientDescent(step_size=1.0, max_steps=1)
    work = {}
    for n in args.sizes:
        g = torch.Generator().manual_seed(args.seed + n)
        graphs = max(args.total_nodes // n, 1)
        problem = task.generate(graphs, float(n), g)
        work[n] = (problem, task.init_answer(problem, g))

    def step(n: int) -> float:
        problem, y0 = work[n]
        t0 = time.perf_counter()
        solver.solve(energy, problem.x, y0, budget=1, segment=problem.segment)
        return time.perf_counter() - t0

    for n in args.sizes:
        for _ in range(args.warmup):
            step(n)
    times: dict[int, list[float]] = {n: [] for n in args.sizes}
    for _ in range(args.rounds):
        for n in args.sizes:
            times[n].append(step(n))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"graph_step: knn k={args.degree:g}, GNNEnergy {sum(p.numel() for p in energy.parameters())} params, "
        f"threads={args.threads}, rounds={args.rounds}, load={load:.2f}"
    )
    per_edge = {}
    for n in args.sizes:
        problem, _ = work[n]
        edges = problem.x.edge_index.shape[1]
        median = statistics.median(times[n])
        per_edge[n] = median / edges * 1e6
        print(
            f"  {n:>6} nodes x {problem.num_instances:>3} graphs: {edges:>7} edges "
            f"(mean degree {edges / problem.x.num_nodes:.2f}), step {median * 1e3:8.2f} ms, "
            f"{per_edge[n]:.3f} us/edge"
        )
    spread = max(per_edge.values()) / min(per_edge.values())
    pairs = " ".join(f"per_edge_us_{n}={v:.4f}" for n, v in per_edge.items())
    print(f"graph_step threads={args.threads} total_nodes={args.total_nodes} {pairs} per_edge_spread={spread:.3f}")


if __name__ == "__main__":
    main()
