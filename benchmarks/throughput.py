"""Every energy family's training iteration as a fraction of the same run's plain matmul GFLOP/s.

Issue 30 asks how close each energy family's CPU training gets to what the machine's matmul
does, at 1 and 2 threads; `benchmarks/train_step.py` answers it for the MLP on inverse only. This
script answers it for every family in FAMILIES, one row each, built as `irem-train` builds it:
the preset's config composed by Hydra (`irem.precheck.compose_command`), `build_task` and
`build_model`, the trainer's optimizer over `model.param_groups` (Adam or AdamW, the preset's
learning rate and weight decay) and its gradient clip. One iteration is Trainer.step without the
callbacks (no learning-rate schedule, EMA or logging; their cost is not counted):

    problem = task.sample(batch, generator)        # data generation: timed, as in training
    loss, _ = model.training_loss(task, problem, generator)
    optimizer.zero_grad(); loss.backward(); [clip_grad_norm_]; optimizer.step()

FLOPs: counted over one iteration, by the operator each matmul-like kernel runs, never derived by
hand per family. Two counts are printed:

  - `torch.profiler.profile(with_flops=True)`: on CPU it counts aten::mm, aten::addmm,
    aten::bmm, aten::baddbmm and aten::conv2d forward (2*M*N*K each) and also aten::mul and
    aten::add (one FLOP per element). It does not count convolution_backward (the input and
    weight gradients of a convolution) nor the fused attention kernel. Only its matmul and
    convolution entries are summed here (`profiler_gflop`); the elementwise ones are printed
    apart.
  - a TorchDispatchMode with torch.utils.flop_counter's formulas (mm, addmm, bmm, baddbmm,
    every convolution including convolution_backward, the attention kernels), which sees the
    same operators after autograd, including the double backward IREM's loss takes. This is the
    count the fraction uses (`gflop`). torch's own FlopCounterMode cannot be used: its module
    hooks refuse `torch.autograd.grad` inside the forward. On families without convolutions the
    two counts agree (the check is printed); on the Sudoku conv energy the profiler's count
    misses the backward convolutions.

Elementwise work, scatter/gather (message passing), softmax, normalisation, Adam and data
generation cost time but no counted FLOPs: a family dominated by them sits far below the matmul
limit however well its matmuls run, which is what the fraction is meant to show. `--profile-table`
prints the top operators by self CPU time; the five heaviest of each family are always printed.

The matmul reference, in the same run: plain float32 torch.mm at the family's own dominant
matmul sizes (the two matmul or convolution shapes with most self CPU time in the profile; a
convolution as its im2col matmul) and one large square (`--large`, 2048^3), the best median of
them (`matmul_gflops`), so the fraction is not flattered by a slow reference. Timing alternates
blocks as train_step.py does: `--iters` back-to-back iterations, then about as long a block of
matmul bursts, `--rounds` times, so both see the same share of a shared machine's load. The
number of iterations per block is chosen from the warm-up so that each family takes about
`--seconds` (half iterations, half matmul). torch.mm is MKL's sgemm; on the 2-core AMD EPYC this
was written on, oneDNN's direct convolutions reached 2-2.5x its GFLOP/s (by the standard count,
padding taps included), so a convolution family's fraction can exceed 1: the family's heaviest
convolution alone is timed beside the reference and printed, not made the reference.

Threads: `--threads 1 2` runs every family at each count (torch.set_num_threads); the OpenMP
wait policy is set before torch loads (irem.openmp, the `irem-train` default), and the load
average is printed before and after each family: on a shared machine the ratios move with it.

Compile: `--compile` tries `torch.compile` (inductor) on the energy and reports what happened.
IREM's training differentiates through the energy's gradient (`create_graph=True`), a double
backward that aot_autograd refuses ("torch.compile with aot_autograd does not currently support
double backward"); the family is then reported as skipped with that reason, not crashed.

Inference: with `--inference` (default on), Sudoku puzzles per second at 320 descent steps with
the sudoku_graph energy and graph edges per second for the GNN at its evaluation budget (the
preset's largest, 40 steps), on freshly generated test-difficulty problems, with the model as
built: untrained weights, which descend the same number of steps as trained ones at a fixed
budget, so the throughput is the same; accuracy is not measured here.

    python benchmarks/throughput.py --threads 1
    python benchmarks/throughput.py --threads 2 --families mlp,sudoku_conv --profile-table sudoku_conv,mlp
    # last line: <family>_fraction_<n>t=... for every family and thread count, mlp_fraction_1t=...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """One energy family: the preset that trains it, and what its inference throughput counts."""

    preset: str
    batch: int | None = None  # None: the preset's trainer.batch_size; set where one iteration took over ~3 s
    inference: str | None = None  # "puzzles" (Sudoku at 320 steps) or "edges" (graphs at the eval budget)
    inference_steps: int | None = None  # None: the preset's largest eval budget
    inference_batch: int | None = None  # None: the preset's eval.batch_size


# A new family (the maze energy) is one more row here, then `--families maze`.
FAMILIES: dict[str, Family] = {
    "mlp": Family("irem_inverse"),
    "gnn": Family("irem_graph_shortest_path", inference="edges"),
    # the preset's batch of 32: 12 s per iteration at 1 thread in a loaded first scan, ~4 s by batch 8's time
    "text_ebt": Family("text_ebt_system1", batch=16),
    "vision_ebt": Family("vision_denoise"),
    # 64 puzzles rather than the eval batch of 250: 320 steps of 250 took about a minute at 1 thread
    "sudoku_graph": Family("sudoku_graph", inference="puzzles", inference_steps=320, inference_batch=64),
    "sudoku_conv": Family("sudoku_conv"),
    "maze_conv": Family("maze_conv"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Each energy family's training GFLOP/s against same-run matmul.")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts, each a full pass")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of: {', '.join(FAMILIES)}")
    parser.add_argument("--batch", type=int, default=None, help="training batch for every family (default: FAMILIES)")
    parser.add_argument(
        "--override", action="append", default=[], help="extra Hydra override for every family (repeatable)"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="about how long each family's timing takes")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="blocks of iterations, each followed by matmul bursts")
    parser.add_argument("--max-iters", type=int, default=20, help="most iterations per block")
    parser.add_argument("--large", type=int, default=2048, help="side of the large square reference matmul")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    parser.add_argument("--compile", action="store_true", help="try torch.compile on each energy (see docstring)")
    parser.add_argument("--no-inference", dest="inference", action="store_false")
    parser.add_argument("--inference-batch", type=int, default=None, help="default: the preset's eval.batch_size")
    parser.add_argument("--inference-repeats", type=int, default=2, help="timed solves (the median is used)")
    parser.add_argument("--inference-steps", type=int, default=None, help="override the descent steps at inference")
    parser.add_argument(
        "--profile-table", default="", metavar="FAMILIES", help="comma-separated: print the profiler's op table"
    )
    parser.add_argument(
        "--omp-wait-policy", choices=("short-spin", "passive", "inherit"), default="short-spin", help="irem/openmp.py"
    )
    args = parser.parse_args()
    names = [n for n in args.families.split(",") if n]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
    args.families = names
    args.profile_table = [n for n in args.profile_table.split(",") if n]
    return args


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy, describe_wait_policy  # noqa: E402

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    configure_wait_policy(ARGS.omp_wait_policy)  # read once, when torch loads OpenMP

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop, sdpa_flop  # noqa: E402

FLOP_FORMULAS = {
    **flop_registry,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_backward_flop,
}
PROFILER_MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv2d")
SHAPE_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution", "aten::convolution_backward")


class CountFlops(TorchDispatchMode):
    """FLOPs of every operator torch.utils.flop_counter has a formula for, by operator name."""

    def __init__(self) -> None:
        super().__init__()
        self.flops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.flops[str(func._overloadpacket)] += int(formula(*args, **kwargs, out_val=out))
        return out


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def timed(fn: Callable[[], Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def compose(preset: str, overrides: list[str]) -> Any:
    from irem.precheck import compose_command

    cfg = compose_command("train", [f"experiment={preset}", *overrides])
    if cfg is None:
        raise SystemExit(f"Hydra refused experiment={preset} {' '.join(overrides)}: run irem-train with it to see why")
    return cfg


def build(family: Family, args: argparse.Namespace) -> tuple[Any, Any, Any, Callable[[], float], int]:
    """The preset's task and model, and one training iteration as Trainer.step runs it."""
    from irem.build import build_model, build_task
    from irem.resolve import optimizer_class

    batch = args.batch or family.batch
    overrides = list(args.override) + ([f"trainer.batch_size={batch}"] if batch else [])
    cfg = compose(family.preset, overrides)
    torch.manual_seed(args.seed)
    task = build_task(cfg.task)
    model = build_model(cfg, task)
    s = cfg.trainer
    groups = [g for g in model.param_groups(float(s.lr)) if g["params"]]
    optimizer = optimizer_class(s.get("optimizer", "adam"))(groups, lr=float(s.lr), weight_decay=s.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    batch, clip = int(s.batch_size), s.get("grad_clip")
    model.train()

    def iteration() -> float:
        problem = task.sample(batch, generator)
        loss, _ = model.training_loss(task, problem, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
        optimizer.step()
        return float(loss.detach())

    return cfg, task, model, iteration, batch


def as_matmul(key: str, shapes: list[list[int]]) -> tuple[int, int, int] | None:
    """(M, K, N) of the plain matmul a profiled op amounts to (a convolution as im2col)."""
    try:
        if key == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
        elif key == "aten::addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
        elif key == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            m *= b
        elif key == "aten::mkldnn_convolution":
            (nb, _, h, w), (cout, cin, kh, kw) = shapes[0], shapes[1]
            m, k, n = nb * h * w, cin * kh * kw, cout
        else:  # aten::convolution_backward(grad_output, input, weight, ...)
            (nb, _, h, w), (cout, cin, kh, kw) = shapes[1], shapes[2]
            m, k, n = nb * h * w, cin * kh * kw, cout
        if "conv" in key and (kh > h or kw > w):
            return None  # not an input and weight pair (the double backward's calls)
    except (ValueError, IndexError, TypeError):
        return None
    return (int(m), int(k), int(n)) if min(m, k, n) > 0 else None


def count_and_profile(iteration: Callable[[], float]) -> tuple[Counter[str], Any]:
    """The FLOPs of one iteration by operator (dispatch count), then a profiled iteration."""
    with CountFlops() as counter:
        iteration()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
        iteration()
    return counter.flops, prof


def dominant_shapes(prof: Any, top: int = 2) -> list[tuple[int, int, int]]:
    """The matmul sizes of the `top` matmul or convolution shapes with most self CPU time."""
    rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in SHAPE_OPS]
    rows.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    shapes: list[tuple[int, int, int]] = []
    for e in rows:
        mkn = as_matmul(e.key, e.input_shapes)
        if mkn is not None and mkn not in shapes:
            shapes.append(mkn)
        if len(shapes) == top:
            break
    return shapes


Reference = tuple[Callable[[], Any], int]  # a kernel call and its FLOPs


def mm_reference(m: int, k: int, n: int) -> Reference:
    a, b = torch.randn(m, k), torch.randn(k, n)
    return (lambda: torch.mm(a, b)), 2 * m * k * n


def conv_reference(prof: Any) -> tuple[str, Reference] | None:
    """The family's heaviest forward convolution alone (oneDNN, no autograd), where it has one."""
    rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::mkldnn_convolution"]
    if not rows:
        return None
    e = max(rows, key=lambda e: e.self_cpu_time_total)
    x_shape, w_shape = e.input_shapes[0], e.input_shapes[1]
    x, w = torch.randn(*x_shape), torch.randn(*w_shape)
    pad = w_shape[2] // 2
    nb, _, h, wd = x_shape
    flops = 2 * nb * h * wd * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]
    return f"conv {x_shape}*{w_shape}", ((lambda: torch.nn.functional.conv2d(x, w, padding=pad)), flops)


def reference_block(refs: dict[str, Reference], burst_s: float, bursts: int) -> dict[str, list[float]]:
    """GFLOP/s samples per reference kernel, each sample a burst of ~burst_s back-to-back calls."""
    rates = {}
    with torch.no_grad():
        for name, (call, flops) in refs.items():
            call()
            t0 = time.perf_counter()
            call()
            reps = max(1, round(burst_s / max(time.perf_counter() - t0, 1e-6)))

            def burst(call: Callable[[], Any] = call, reps: int = reps) -> None:
                for _ in range(reps):
                    call()

            rates[name] = [reps * flops / t / 1e9 for t in timed(burst, bursts)]
    return rates


def try_compile(model: Any, iteration: Callable[[], float]) -> str:
    """Compile the energy's `energy` method and run one iteration: 'ok' or why it cannot be used."""
    energy = model.energy
    energy.energy = torch.compile(energy.energy)  # the method the solver calls, per instance
    try:
        # without this, aot_autograd stops earlier on its donated buffers (create_graph=True)
        with torch._functorch.config.patch(donated_buffer=False):
            iteration()
    except Exception as err:  # noqa: BLE001  (any refusal is reported, not raised)
        first = str(err).strip().splitlines()
        return "skipped: " + (first[0] if first else type(err).__name__)
    finally:
        del energy.energy  # the class's method again
    return "ok (compiled iteration ran; not timed in this version)"


def inference(name: str, family: Family, cfg: Any, task: Any, model: Any, args: argparse.Namespace) -> dict:
    """Throughput of the preset's solve at its evaluation budget, on fresh test-difficulty problems."""
    steps = args.inference_steps or family.inference_steps or max(int(b) for b in cfg.eval.budgets)
    n = args.inference_batch or family.inference_batch or int(cfg.eval.batch_size)
    g = torch.Generator().manual_seed(args.seed + 1)
    problem = task.generate(n, task.difficulty, g)
    model.eval()
    try:
        solve = lambda: model.predict(task, problem, [steps], torch.Generator().manual_seed(args.seed))  # noqa: E731
        times = timed(solve, args.inference_repeats)  # warm already: the training iterations ran first
    finally:
        model.train()
    t = statistics.median(times)
    out = {"steps": steps, "instances": n, "seconds": t, "per_s": n / t}
    if family.inference == "edges":
        edges = int(problem.x.edge_index.shape[1])
        out.update(edges=edges, edges_per_s=edges / t)
    return out


def run_family(name: str, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    family = FAMILIES[name]
    torch.set_num_threads(threads)
    cfg, task, model, iteration, batch = build(family, args)
    load_before = loadavg()
    warm = timed(iteration, max(args.warmup, 1))
    t_iter = statistics.median(warm[-2:])
    counted, prof = count_and_profile(iteration)
    events = prof.key_averages()
    profiler_mm = {e.key: e.flops for e in events if e.flops and e.key in PROFILER_MATMUL_OPS}
    profiler_elementwise = sum(e.flops for e in events if e.flops and e.key not in PROFILER_MATMUL_OPS)
    flops = sum(counted.values())
    shapes = dominant_shapes(prof)
    large = (args.large, args.large, args.large)
    refs = {f"{m}x{k}@{k}x{n}": mm_reference(m, k, n) for m, k, n in [*shapes, large]}
    conv = conv_reference(prof)  # printed beside the matmul reference, not part of it
    if conv is not None:
        refs[conv[0]] = conv[1]

    iters = max(1, min(args.max_iters, round(args.seconds / 2 / args.rounds / max(t_iter, 1e-3))))
    iter_times: list[float] = []
    rates: dict[str, list[float]] = {k: [] for k in refs}
    for _ in range(args.rounds):
        iter_times += timed(iteration, iters)
        block = statistics.median(iter_times[-iters:]) * iters
        for k, r in reference_block(refs, block / len(refs) / 3, bursts=3).items():
            rates[k] += r
    ms = statistics.median(iter_times) * 1e3
    mm = {k: statistics.median(v) for k, v in rates.items() if not k.startswith("conv")}
    ref = max(mm, key=mm.get)
    conv_gflops = {k: statistics.median(v) for k, v in rates.items() if k.startswith("conv")}
    gflops = flops / (ms / 1e3) / 1e9
    fraction = gflops / mm[ref]
    prof_flops = sum(profiler_mm.values())

    print(
        f"\n== {name} ({family.preset}), {threads} thread(s): batch {batch}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, loadavg before {load_before}"
    )
    print(
        "  counted GFLOP per iteration: "
        + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in counted.most_common())
        + f" = {flops / 1e9:.3f}; profiler matmul/conv2d {prof_flops / 1e9:.3f} "
        f"({', '.join(f'{k} {v / 1e9:.3f}' for k, v in profiler_mm.items())}), "
        f"profiler elementwise {profiler_elementwise / 1e9:.3f} (not counted)"
    )
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:5]
    total_us = sum(e.self_cpu_time_total for e in events) or 1
    print(
        "  top ops by self CPU time (profiled iteration): "
        + ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total_us:.0f}% ({e.count})" for e in top)
    )
    if name in args.profile_table:
        print(events.table(sort_by="self_cpu_time_total", row_limit=25))
    print("  matmul reference GFLOP/s (median): " + ", ".join(f"{k} {v:.1f}" for k, v in mm.items()) + f" -> {ref}")
    for k, v in conv_gflops.items():
        print(f"  its own convolution alone (oneDNN, forward, not the reference): {k} {v:.1f} GFLOP/s")
    print(
        f"  iteration: median {ms:.1f} ms (min {min(iter_times) * 1e3:.1f}, max {max(iter_times) * 1e3:.1f}, "
        f"n={len(iter_times)}), {gflops:.2f} GFLOP/s, fraction {fraction:.3f} "
        f"(profiler count: {prof_flops / (ms / 1e3) / 1e9 / mm[ref]:.3f}); loadavg after {loadavg()}"
    )
    result: dict[str, Any] = {
        "gflops": gflops,
        "matmul_gflops": mm[ref],
        "fraction": fraction,
        "ms": ms,
        "profiler_fraction": prof_flops / (ms / 1e3) / 1e9 / mm[ref],
    }
    if args.compile:
        result["compile"] = try_compile(model, iteration)
        print(f"  compile: {result['compile']}")
    if args.inference and family.inference:
        inf = inference(name, family, cfg, task, model, args)
        result["inference"] = inf
        extra = f", {inf['edges_per_s']:.0f} edges/s ({inf['edges']} edges)" if "edges" in inf else ""
        print(
            f"  inference (untrained weights): {inf['instances']} instances, {inf['steps']} steps, "
            f"{inf['seconds']:.2f} s per batch, {inf['per_s']:.1f} instances/s{extra}"
        )
    return result


def main() -> None:
    args = ARGS
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    print(
        f"torch {torch.__version__}, {describe_wait_policy()}, cpu_count={os.cpu_count()}, loadavg={loadavg()}, "
        f"families={','.join(args.families)}, threads={args.threads}, batch={args.batch or 'preset'}, "
        f"overrides={args.override or 'none'}, flush_denormal={args.flush_denormal}"
    )
    keys: dict[str, str] = {}
    for threads in args.threads:
        for name in args.families:
            r = run_family(name, threads, args)
            keys[f"{name}_fraction_{threads}t"] = f"{r['fraction']:.3f}"
            keys[f"{name}_ms_{threads}t"] = f"{r['ms']:.1f}"
            if "compile" in r:
                keys[f"{name}_compile_{threads}t"] = "ok" if r["compile"].startswith("ok") else "skipped"
            inf = r.get("inference")
            if inf is not None and "edges_per_s" in inf:
                keys[f"{name}_edges_per_s_{threads}t"] = f"{inf['edges_per_s']:.0f}"
            elif inf is not None:
                keys[f"{name}_puzzles_per_s_{threads}t"] = f"{inf['per_s']:.2f}"
    print(f"\nloadavg at the end {loadavg()}")
    print(" ".join(f"{k}={v}" for k, v in keys.items()))


if __name__ == "__main__":
    main()
