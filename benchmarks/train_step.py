"""One IREM training iteration on matrix inverse, timed, as a fraction of plain matmul speed.

The iteration is exactly the trainer's: build
`EnergyModel(MLPEnergy(x_dim=400, y_dim=400), GradientDescent(step_size=100, max_steps=10,
truncate=1), IREMObjective())` with the default replay buffer, task `Inverse()` (20x20, rank 20), then per iteration

    problem = task.sample(512, generator)          # data generation: timed
    loss, _ = model.training_loss(task, problem, generator)
    optimizer.zero_grad(); loss.backward(); Adam step

after `--warmup` untimed iterations (they also fill the replay buffer, so timed iterations mix
fresh and replayed instances as training does). `ms_per_iter` is the median over all timed
iterations.

What is counted as FLOPs: the matrix multiplies the iteration executes, 2*M*N*K each, nothing
else (activations, the solver's elementwise updates, Adam and data generation cost time but no
counted FLOPs). Derived analytically for the current implementation (B=512, y and x 400 wide,
width w=512, 3 hidden layers, T=10 steps, last step differentiated):

  - T energy evaluations (steps 0..T-1; the energy of the final iterate is skipped in training),
    each a forward through the four Linear layers, y half of the first layer only, 2B(400w +
    2w^2 + w), and a backward to y, 2B(w + 2w^2 + 400w);
  - once per descent, the x half of the first layer, 2B*400w (MLPEnergy.prepare);
  - the double backward through the one differentiated step, from loss.backward(): four
    multiplies per hidden-hidden layer (grad of the backward mm w.r.t. its input and weight,
    grad of the forward mm w.r.t. its input and weight), four on the y half of the first layer
    (the last of which is a gradient for the throwaway leaf y that autograd computes anyway),
    the x half's weight gradient and the last layer's: 2B(8w^2 + 4*400w + 400w + w).

That is 18.35 GFLOP per iteration. torch.profiler(with_flops=True) over one iteration must agree
(it also sees the 8 MFLOP bmm of data generation); the script prints both and fails if they
differ by more than 1%. For reference, the original implementation (concatenated [y, x] input,
x half recomputed every step) executed 22.97 GFLOP for the same result; `naive_gflops` is that
count over the measured time.

The matmul reference: plain float32 torch.mm timed in the same run at the workload's dominant
shape (512x512 @ 512x512, the hidden layers), its first-layer shape (512x400 @ 400x512) and a
large square one (2048^3). Timing alternates blocks: `--iters` back-to-back iterations, as the
trainer runs them, then as long a block of matmul bursts (one per shape per iteration), so both
figures see the same share of a shared machine's load (the median of many 3 ms matmuls would
report unpreempted speed while a 250 ms iteration pays its share of the load). Blocks rather
than one burst after every iteration: a 2048^3 burst evicts the model from cache, and an
iteration timed right after one ran ~7% slower than the trainer's back-to-back iterations
(141 vs 132 ms). `matmul_gflops` is the highest of
the three medians, the best rate a plain matmul reaches here at this thread count, so the
fraction is not flattered by a slow reference. The minimum iteration time is printed too; on an
idle machine the median approaches it.

Threads: `--threads` (default 2, this machine's core count); the thread count, OpenMP wait
policy and load average are printed. The trainer generates data in-process, so there are no
loader workers to oversubscribe the cores, but other processes on a 2-core machine do, and how
OpenMP threads wait between the iteration's few hundred operations matters both ways: spinning
(libgomp's default) made the iteration 10x slower at load average ~6 (2911 vs 230 ms), while
sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs ~15% on an idle machine in wake-ups (137 vs
116 ms). This script applies the same default as `irem-train`, a short bounded spin
(GOMP_SPINCOUNT=30000, see irem/openmp.py for the table), unless the environment sets either
variable; `--omp-wait-policy passive` or `inherit` compares.

`--flush-denormal` sets torch.set_flush_denormal(True). Training on inverse produces no denormal
floats (checked over 60 iterations on activations, dE/dy, parameter gradients and Adam state)
and the flag changed nothing measurable (229.4 vs 229.9 ms), so it is off by default and no
library option was added.

    python benchmarks/train_step.py                 # last line: gflops=... matmul_gflops=... fraction=... ms_per_iter=...
    python benchmarks/train_step.py --threads 1 --table
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One IREM training iteration on inverse vs plain matmul GFLOP/s.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --iters timed iterations")
    parser.add_argument(
        "--iters", type=int, default=6, help="back-to-back timed iterations per round, then matmul bursts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-denormal", action="store_true")
    parser.add_argument(
        "--omp-wait-policy",
        choices=("short-spin", "passive", "inherit"),
        default="short-spin",
        help="how OpenMP threads wait, unless the environment sets it (irem/openmp.py); inherit leaves it alone",
    )
    parser.add_argument("--table", action="store_true", help="print the profiler's top ops")
    return parser.parse_args()


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy, describe_wait_policy  # noqa: E402

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    configure_wait_policy(ARGS.omp_wait_policy)  # read once, when torch loads OpenMP

import torch  # noqa: E402

from irem.energies.mlp import MLPEnergy  # noqa: E402
from irem.energy_model import EnergyModel  # noqa: E402
from irem.objectives.irem import IREMObjective  # noqa: E402
from irem.solvers.gradient_descent import GradientDescent  # noqa: E402
from irem.tasks.matrix import Inverse  # noqa: E402

MATMUL_SHAPES = {"512x512@512x512": (512, 512, 512), "512x400@400x512": (512, 400, 512), "2048^3": (2048, 2048, 2048)}


def analytic_flops(batch: int, y_dim: int, x_dim: int, width: int, depth: int, steps: int) -> dict[str, int]:
    """Matmul FLOPs of one training iteration (truncate=1), split by where they happen."""
    b, w = batch, width
    hidden = (depth - 1) * w * w  # the hidden-to-hidden layers
    forward = 2 * b * (y_dim * w + hidden + w)
    backward_y = 2 * b * (w + hidden + w * y_dim)
    prepare = 2 * b * x_dim * w
    double_backward = 2 * b * (4 * hidden + 4 * w * y_dim + x_dim * w + w)
    return {
        "forward": steps * forward,
        "backward_to_y": steps * backward_y,
        "x_half_once": prepare,
        "double_backward": double_backward,
    }


def naive_flops(batch: int, y_dim: int, x_dim: int, width: int, depth: int, steps: int) -> int:
    """The same iteration as first implemented: concat input, x half recomputed every step."""
    b, w, d_in = batch, width, y_dim + x_dim
    hidden = (depth - 1) * w * w
    per_eval = 2 * b * (d_in * w + hidden + w) * 2
    return steps * per_eval + 2 * b * (4 * hidden + 4 * d_in * w + w)


def build(batch: int, steps: int, seed: int):
    torch.manual_seed(seed)
    task = Inverse()
    dims = task.dims()
    model = EnergyModel(MLPEnergy(**dims), GradientDescent(step_size=100, max_steps=steps, truncate=1), IREMObjective())
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()

    def iteration() -> float:  # Trainer._step, less its logging
        problem = task.sample(batch, generator)
        loss, _ = model.training_loss(task, problem, generator)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite training loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def sample_only() -> None:
        task.sample(batch, generator)

    return task, model, iteration, sample_only


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def matmul_round(
    mats: dict[str, tuple[torch.Tensor, torch.Tensor]], burst_s: float, bursts: int
) -> dict[str, list[float]]:
    """GFLOP/s samples of each reference shape, each sample a burst of back-to-back matmuls.

    Bursts of `burst_s` (together about one training iteration), timed right after each
    iteration, so on a shared machine both are equally exposed to preemption: the median of
    many 3 ms matmuls would report the unpreempted speed while the median 250 ms iteration pays
    its share of the load.
    """
    rates = {}
    for name, (a, b) in mats.items():
        flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
        torch.mm(a, b)
        t0 = time.perf_counter()
        torch.mm(a, b)
        reps = max(1, round(burst_s / max(time.perf_counter() - t0, 1e-6)))

        def burst(a: torch.Tensor = a, b: torch.Tensor = b, reps: int = reps) -> None:
            for _ in range(reps):
                torch.mm(a, b)

        rates[name] = [reps * flops / t / 1e9 for t in timed(burst, bursts)]
    return rates


def profiler_flops(iteration) -> tuple[float, object]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        iteration()
    table = prof.key_averages()
    return float(sum(e.flops for e in table)), table


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    task, model, iteration, sample_only = build(args.batch, args.steps, args.seed)
    dims = task.dims()
    width, depth = 512, 3
    parts = analytic_flops(args.batch, dims["y_dim"], dims["x_dim"], width, depth, args.steps)
    flops = sum(parts.values())
    naive = naive_flops(args.batch, dims["y_dim"], dims["x_dim"], width, depth, args.steps)
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, flush_denormal={args.flush_denormal}, "
        f"{describe_wait_policy()}, "
        f"loadavg={' '.join(f'{v:.2f}' for v in os.getloadavg())}, cpu_count={os.cpu_count()}"
    )
    print(f"workload: inverse 20x20, batch {args.batch}, {args.steps} descent steps, truncate=1, Adam")

    warm = timed(iteration, max(args.warmup, 1))
    burst_s = statistics.median(warm[-3:])

    mats = {name: (torch.randn(m, k), torch.randn(k, n)) for name, (m, k, n) in MATMUL_SHAPES.items()}
    iter_times: list[float] = []
    data_times: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in mats}
    for _ in range(args.rounds):
        # a block of back-to-back iterations, as the trainer runs them (warm caches), then as
        # long a block of matmul bursts: load on a shared machine shifts in phases of seconds
        iter_times += timed(iteration, args.iters)
        for name, r in matmul_round(mats, burst_s / len(mats), bursts=args.iters).items():
            rates[name] += r
        data_times += timed(sample_only, 2)

    measured, table = profiler_flops(iteration)
    ms = statistics.median(iter_times) * 1e3
    data_ms = statistics.median(data_times) * 1e3
    mm = {name: statistics.median(r) for name, r in rates.items()}
    ref_name = max(mm, key=mm.get)
    matmul_gflops = mm[ref_name]
    gflops = flops / (ms / 1e3) / 1e9

    if args.table:
        print(table.table(sort_by="self_cpu_time_total", row_limit=20))
    print("matmul FLOPs per iteration (analytic): " + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in parts.items()))
    agree = abs(measured - flops) / flops
    print(
        f"analytic {flops / 1e9:.3f} GFLOP, profiler {measured / 1e9:.3f} GFLOP (incl. data-generation bmm), "
        f"rel. diff {agree:.2%}; original implementation {naive / 1e9:.3f} GFLOP"
    )
    if agree > 0.01:
        raise SystemExit("analytic and profiler FLOP counts disagree by more than 1%: update analytic_flops")
    print("matmul reference GFLOP/s (median): " + ", ".join(f"{k} {v:.1f}" for k, v in mm.items()) + f" -> {ref_name}")
    print(
        f"iteration: median {ms:.1f} ms (min {min(iter_times) * 1e3:.1f}, max {max(iter_times) * 1e3:.1f}, "
        f"n={len(iter_times)}); data generation {data_ms:.1f} ms of it; "
        f"{flops / ((ms - data_ms) / 1e3) / 1e9:.1f} GFLOP/s without it; "
        f"naive_gflops={naive / (ms / 1e3) / 1e9:.1f}"
    )
    print(
        f"gflops={gflops:.1f} matmul_gflops={matmul_gflops:.1f} fraction={gflops / matmul_gflops:.3f} ms_per_iter={ms:.1f}"
    )


if __name__ == "__main__":
    main()
