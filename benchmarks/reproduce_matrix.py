"""Reproduce IREM's matrix claims on CPU: energy model vs baselines at equal iterations and time.

For each task (addition, inverse, low-rank; 20x20) it trains the IREM energy model and every
baseline for the same number of iterations, plus the feed-forward baseline for the energy
model's wall-clock (iterations scaled by the cost ratio benchmarks/iteration_cost.py measures),
then prints one table per task: MSE on the test and harder splits at each step budget and at the lowest-energy iterate. Each run is an ordinary
`irem-train` run in <out>/<task>-<model>; rerunning resumes or reuses finished runs.

    python benchmarks/reproduce_matrix.py --iterations 2000 --jobs 2      # ~1 h on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

IREM_TRAIN = str(Path(sys.executable).with_name("irem-train"))
BASELINES = ("feedforward", "recurrent", "pondernet", "residual")
BUDGETS = ("1", "10", "20", "40", "80", "best")


def run(out: Path, task: str, label: str, overrides: list[str], threads: int) -> Path:
    run_dir = out / f"{task}-{label}"
    if (run_dir / "eval.json").exists():
        return run_dir
    cmd = [
        IREM_TRAIN,
        f"experiment=irem_{task}",
        f"threads={threads}",
        "trainer.progress=false",
        f"name={task}-{label}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    print("running:", " ".join(cmd), flush=True)
    log = out / f"{task}-{label}.log"
    with log.open("w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return run_dir


def table(out: Path, task: str, labels: list[str]) -> list[str]:
    lines = [
        f"### {task}",
        "",
        "| model | iters | train s | split | " + " | ".join(f"{b} steps" if b.isdigit() else b for b in BUDGETS) + " |",
    ]
    lines.append("|" + " --- |" * (4 + len(BUDGETS)))
    for label in labels:
        run_dir = out / f"{task}-{label}"
        if not (run_dir / "eval.json").exists():
            continue
        rows = json.loads((run_dir / "eval.json").read_text())
        summary = json.loads((run_dir / "train_summary.json").read_text())
        for split in ("test", "harder"):
            value = {r["budget"]: r["value"] for r in rows if r["split"] == split and r["metric"] == "mse"}
            cells = [f"{value[b]:.4f}" if b in value else "" for b in BUDGETS]
            lines.append(
                f"| {label} | {summary['iterations']} | {summary['train_seconds']:.0f} | {split} | "
                + " | ".join(cells)
                + " |"
            )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--tasks", nargs="+", default=["addition", "inverse", "lowrank"])
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--out", type=Path, default=Path("runs/repro"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    iters = [f"trainer.iterations={args.iterations}"]

    def energy_then_equal_time(task: str) -> None:
        run(args.out, task, "energy", iters, 1)
        # equal wall-clock as a cost ratio measured with both models interleaved in one process:
        # run times on a shared machine depend on what ran beside them
        cost = (
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).with_name("iteration_cost.py")),
                    "--task",
                    task,
                    "--models",
                    "energy",
                    "feedforward",
                    "--repeats",
                    "5",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        ratio = float(dict(kv.split("=") for kv in cost.split())["feedforward"])
        equal = f"trainer.iterations={round(ratio * args.iterations)}"
        run(
            args.out,
            task,
            "feedforward-equal-time",
            ["baseline=feedforward", equal, "trainer.checkpoint_every=2000"],
            1,
        )

    # cheap equal-iteration baselines first, the long equal-time runs last
    jobs = [
        (lambda t, b=b: run(args.out, t, b, [*iters, f"baseline={b}"], 1), t)
        for t in args.tasks
        for b in args.baselines
    ]
    jobs += [(energy_then_equal_time, t) for t in args.tasks]
    with ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(fn, t) for fn, t in jobs]:
            f.result()

    labels = ["energy", *args.baselines, "feedforward-equal-time"]
    report = ["# IREM matrix reproduction (MSE per element)", ""]
    for task in args.tasks:
        report += table(args.out, task, labels)
    text = "\n".join(report)
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
