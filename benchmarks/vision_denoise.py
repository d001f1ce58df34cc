"""Image denoising, EBT against diffusion: PSNR and MSE against forward passes, from three trained runs.

    irem-train experiment=vision_denoise                            # -> runs/vision/vision-energy
    irem-train experiment=vision_denoise baseline=dit               # -> runs/vision/vision-dit
    irem-train experiment=vision_denoise baseline=direct_denoiser   # -> runs/vision/vision-direct_denoiser
    python benchmarks/vision_denoise.py

Each model answers every test split (noise 0.1 in distribution; 0.2 and 0.3 out of distribution,
on the same clean patches) at its own budgets: EBT descent steps (one pass = a forward plus the
gradient in the input), DDIM steps for the DiT (one forward each), one pass for the direct
denoiser. The noisy input itself is the first row. PSNR is on the 0-255 scale (answers clipped to
[0, 1]) and averaged over patches. Wall-clock per patch is measured in the same process, one
thread, so the cost of an EBT pass against a DiT pass is visible rather than assumed.

Writes the markdown table (printed and saved), a JSON of every number, a grid PNG of noisy / EBT /
DiT / direct / clean for a few test patches at each noise level, and the same grids as TensorBoard
images. The last line is key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from irem.build import load_run
from irem.predictor import Predictor
from irem.seeds import eval_generator
from irem.task import Task

ROOT = Path(__file__).resolve().parent.parent


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def answer(model: Predictor, task: Task, split: str, budget: int, seed: int) -> tuple[torch.Tensor, float]:
    """The model's answer on `split` at one budget, and the seconds it took (one call, every patch)."""
    problem = task.split(split)
    start = time.perf_counter()
    y = model.predict(task, problem, [budget], eval_generator(seed, split)).answers[str(budget)]
    return y.detach(), time.perf_counter() - start


def psnr_mse(task: Task, split: str, y: torch.Tensor) -> tuple[float, float]:
    m = task.metrics(task.split(split), y)
    return float(m["psnr"].mean()), float(m["mse"].mean())


def training_note(run_dir: Path) -> dict:
    summary = run_dir / "train_summary.json"
    return json.loads(summary.read_text()) if summary.exists() else {}


def grid_image(columns: list[torch.Tensor], scale: int = 3, gap: int = 2) -> torch.Tensor:
    """[3, H, W] image: one row per patch, one column per tensor of [P, C, S, S] (upscaled, 1-px gaps)."""
    rows = []
    for i in range(columns[0].shape[0]):
        cells = []
        for col in columns:
            patch = col[i].clamp(0, 1).expand(3, -1, -1)
            patch = patch.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            cells += [patch, torch.ones(3, patch.shape[1], gap)]
        rows += [torch.cat(cells[:-1], dim=2), torch.ones(3, gap, sum(c.shape[2] for c in cells[:-1]))]
    return torch.cat(rows[:-1], dim=1)


def save_grid(grids: dict[str, torch.Tensor], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 6.0))
    axes = [axes] if len(grids) == 1 else list(axes)
    for ax, (title, image) in zip(axes, grids.items(), strict=True):
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        width = image.shape[2] / len(labels)
        ax.set_xticks([width * (i + 0.5) for i in range(len(labels))], labels, fontsize=8)
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ebt", default="runs/vision/vision-energy")
    parser.add_argument("--dit", default="runs/vision/vision-dit")
    parser.add_argument("--direct", default="runs/vision/vision-direct_denoiser")
    parser.add_argument("--ebt-steps", type=ints, default=[1, 2, 3, 5])
    parser.add_argument("--dit-steps", type=ints, default=[1, 3, 10, 100])
    parser.add_argument("--splits", default="test,harder,harder_0.3")
    parser.add_argument("--grid-patches", type=int, default=6)
    parser.add_argument("--grid-ebt", type=int, default=3, help="EBT steps shown in the grid")
    parser.add_argument("--grid-dit", type=int, default=100, help="DDIM steps shown in the grid")
    parser.add_argument("--out", default="runs/vision/report")
    parser.add_argument("--tb", default="runs/vision/benchmark/tb")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = args.splits.split(",")

    runs = {"EBT": Path(args.ebt), "DiT": Path(args.dit), "direct": Path(args.direct)}
    models: dict[str, Predictor] = {}
    task: Task | None = None
    for label, run_dir in runs.items():
        _, _, run_task, model = load_run(run_dir)
        model.eval()
        models[label] = model
        task = task or run_task
    assert task is not None
    levels = task.split_levels()
    unknown = [s for s in splits if s not in levels]
    if unknown:
        raise SystemExit(f"--splits names {', '.join(unknown)}; valid splits: {', '.join(levels)}.")

    plan = [("noisy input", None, 0), ("direct", "direct", 1)]
    plan += [(f"EBT {k} steps", "EBT", k) for k in args.ebt_steps]
    plan += [(f"DiT {k} DDIM steps", "DiT", k) for k in args.dit_steps]
    results: list[dict] = []
    answers: dict[tuple[str, str], torch.Tensor] = {}
    for name, label, budget in plan:
        row: dict = {"model": name, "passes": budget, "psnr": {}, "mse": {}, "ms_per_patch": None}
        for split in splits:
            if label is None:
                y, seconds = task.split(split).x, 0.0
            else:
                y, seconds = answer(models[label], task, split, budget, args.seed)
            row["psnr"][split], row["mse"][split] = psnr_mse(task, split, y)
            answers[(name, split)] = y
            if split == splits[0]:
                row["ms_per_patch"] = 1000 * seconds / task.split(split).num_instances
        results.append(row)
        print(f"{name}: " + " ".join(f"{s}={row['psnr'][s]:.2f}dB" for s in splits), flush=True)

    params = {label: sum(p.numel() for p in m.parameters()) for label, m in models.items()}
    trained = {label: training_note(path) for label, path in runs.items()}
    sigma = {s: levels[s] for s in splits}
    head = (
        "| model | passes | "
        + " | ".join(f"PSNR σ={sigma[s]:g}{' (in dist.)' if i == 0 else ''}" for i, s in enumerate(splits))
        + " | "
        + " | ".join(f"MSE σ={sigma[s]:g}" for s in splits)
        + " | ms / patch |"
    )
    lines = [head, "|" + "---|" * (3 + 2 * len(splits))]
    for row in results:
        ms = "" if row["ms_per_patch"] is None or row["passes"] == 0 else f"{row['ms_per_patch']:.2f}"
        lines.append(
            f"| {row['model']} | {row['passes']} | "
            + " | ".join(f"{row['psnr'][s]:.2f}" for s in splits)
            + " | "
            + " | ".join(f"{row['mse'][s]:.5f}" for s in splits)
            + f" | {ms} |"
        )
    notes = [
        f"{label}: {params[label] / 1e6:.3f}M parameters, {trained[label].get('iterations', '?')} iterations in "
        f"{trained[label].get('train_seconds', float('nan')):.0f} s"
        for label in runs
    ]
    table = "\n".join(lines)
    print()
    print(table)
    print()
    print("; ".join(notes))

    out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n\n" + "; ".join(notes) + "\n")
    (out / "results.json").write_text(json.dumps({"rows": results, "params": params, "trained": trained}, indent=2))

    # the grid: the first patches of the fixed test split at each noise level
    k = args.grid_patches
    ebt_name, dit_name = f"EBT {args.grid_ebt} steps", f"DiT {args.grid_dit} DDIM steps"
    for name, label, budget in ((ebt_name, "EBT", args.grid_ebt), (dit_name, "DiT", args.grid_dit)):
        for split in splits:
            if (name, split) not in answers:
                answers[(name, split)] = answer(models[label], task, split, budget, args.seed)[0]
    labels = ["noisy", f"EBT {args.grid_ebt}", f"DiT {args.grid_dit}", "direct", "clean"]
    grids = {}
    for split in splits:
        clean = task.split(split).target[:k]
        cols = [answers[(n, split)][:k] for n in ("noisy input", ebt_name, dit_name, "direct")] + [clean]
        grids[f"σ={sigma[split]:g}"] = grid_image(cols)
    grid_path = out / "denoise_grid.png"
    save_grid(grids, labels, grid_path)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(ROOT / args.tb if not Path(args.tb).is_absolute() else args.tb))
    for title, image in grids.items():
        writer.add_image(f"denoise/{title} ({' | '.join(labels)})", image, 0)
    writer.add_text("denoise/table", table, 0)
    writer.close()
    print(f"grid: {grid_path}  table: {out / 'table.md'}  tensorboard: {args.tb}")

    first = splits[0]
    pairs = {}
    for row in results:
        key = row["model"].replace(" DDIM steps", "").replace(" steps", "").replace(" ", "_")
        for s in splits:
            pairs[f"{key}_psnr_{sigma[s]:g}"] = f"{row['psnr'][s]:.2f}"
    pairs["in_dist_split"] = first
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
