"""One IRED training iteration against one IREM iteration on matrix inverse, timed in one run, with FLOPs.

Both models are built as `irem-train` builds them (experiment=ired_inverse, experiment=irem_inverse:
the same MLP backbone of 512 x 3, IRED's with its landscape embedding and squared-norm head) and
trained on the same batches with Adam. IREM's iteration descends 10 steps and differentiates the
last; IRED's takes the gradient of one landscape at the noised truth with its graph (denoising),
descends the negative 2 accept-if-lower steps without one, and scores positive and negative
(contrast). Iterations alternate, `--warmup` untimed first; medians of `--repeats`.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode over one whole iteration (forward,
the descent's own gradients and the backward): matrix products, which is where this MLP spends its
time. The check: the time ratio within 1.3x of the FLOP ratio, i.e. IRED's extra work costs what
its arithmetic says and no more.

    python benchmarks/ired_step.py --threads 1     # last line: ired_over_irem=<time ratio> flop_ratio=<...>
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irem.openmp import configure_wait_policy  # noqa: E402

configure_wait_policy()

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from irem.build import build_model, build_task  # noqa: E402
from irem.cli import CONFIG_DIR  # noqa: E402


def build(preset: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}", "model.replay_capacity=0"])
    task = build_task(cfg.task)
    return task, build_model(cfg, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    task, ired = build("ired_inverse")
    _, irem = build("irem_inverse")
    models = {"ired": ired, "irem": irem}
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    g = torch.Generator().manual_seed(args.seed)
    batches = [task.sample(args.batch, g) for _ in range(args.warmup + args.repeats)]

    def step(name: str, problem) -> float:
        t0 = time.perf_counter()
        loss, _ = models[name].training_loss(task, problem, g)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - t0

    flops = {}
    for name in models:
        with FlopCounterMode(display=False) as counter:
            loss, _ = models[name].training_loss(task, batches[0], g)
            loss.backward()
        flops[name] = counter.get_total_flops()
        models[name].zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {name: [] for name in models}
    for i, problem in enumerate(batches):
        for name in models:  # alternate, so both see the same share of the machine's load
            t = step(name, problem)
            if i >= args.warmup:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio, flop_ratio = med["ired"] / med["irem"], flops["ired"] / flops["irem"]
    print(f"inverse 20x20, batch {args.batch}, threads={torch.get_num_threads()}")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name}: {params:,} parameters, {flops[name] / 1e9:.2f} GFLOP per iteration, median {med[name] * 1e3:.1f} ms"
        )
    within = max(ratio / flop_ratio, flop_ratio / ratio)
    print(f"time ratio / FLOP ratio = {ratio / flop_ratio:.3f} (target: within 1.3x either way: {within <= 1.3})")
    print(f"ired_over_irem={ratio:.3f} flop_ratio={flop_ratio:.3f} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
