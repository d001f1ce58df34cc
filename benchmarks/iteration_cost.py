"""Cost of one training iteration of each model, as a ratio to the energy model, in one run.

Used to compare models at equal wall-clock: on a shared machine the seconds a run reports depend
on what else ran beside it, while a ratio measured here, with the models' iterations interleaved,
does not. A baseline trained for `ratio x N` iterations has had the compute of N energy-model
iterations.

    python benchmarks/iteration_cost.py --task inverse --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from irem.build import build_model, build_task
from irem.cli import CONFIG_DIR

MODELS = ("energy", "feedforward", "recurrent", "pondernet", "residual")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="inverse")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    setups = {}
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for name in args.models:
            overrides = [f"experiment=irem_{args.task}"] + ([] if name == "energy" else [f"baseline={name}"])
            cfg = compose("train", overrides=overrides)
            task = build_task(cfg.task)
            model = build_model(cfg, task)
            setups[name] = (
                task,
                model,
                torch.optim.Adam(model.parameters(), lr=1e-4),
                torch.Generator().manual_seed(0),
            )

    def step(name: str) -> float:
        task, model, opt, g = setups[name]
        t0 = time.perf_counter()
        problem = task.sample(args.batch_size, g)
        loss, _ = model.training_loss(task, problem, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {n: [] for n in setups}
    for name in setups:  # warm-up (and fill the energy model's replay buffer a little)
        for _ in range(3):
            step(name)
    for _ in range(args.repeats):
        for name in setups:
            times[name].append(step(name))
    base = statistics.median(times[args.models[0]])
    for name, ts in times.items():
        print(
            f"{name:<12} {statistics.median(ts) * 1e3:8.1f} ms/iter  ratio_to_{args.models[0]}={base / statistics.median(ts):.2f}"
        )
    print(" ".join(f"{n}={base / statistics.median(ts):.3f}" for n, ts in times.items()))


if __name__ == "__main__":
    main()
