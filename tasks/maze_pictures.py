"""Pictures of mazes: the predicted path over the true one, and accuracy against budget per size.

A maze is drawn on its unit grid (walls black, open white, start green, goal red); the true path is
light blue, and a predicted path unit is dark blue where it is right and orange where it is not on
the path. Images of deep-thinking's layout are read back to their units first.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from irem.tasks import maze_gen as gen

TRUTH = (0.65, 0.8, 1.0)
RIGHT = (0.1, 0.25, 0.75)
WRONG = (1.0, 0.55, 0.0)


def overlay(codes: Tensor, truth: Tensor, predicted: Tensor) -> Tensor:
    """An RGB image [G, G, 3] of one maze's units with the true and predicted paths."""
    img = gen.COLOURS[codes.long()].clone()
    for mask, colour in (
        (truth & (codes == gen.OPEN), TRUTH),
        (predicted & truth & (codes == gen.OPEN), RIGHT),
        (predicted & ~truth, WRONG),
    ):
        img[mask] = torch.tensor(colour)
    return img


def draw_paths(panels: list[tuple[str, Tensor, Tensor, Tensor]], path: str | Path, columns: int = 4) -> Path:
    """One panel per (title, codes [G, G], truth [G, G] bool, predicted [G, G] bool), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, codes, truth, predicted) in zip(axes.flat, panels, strict=False):
        ax.imshow(overlay(codes, truth, predicted).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_figure(curves: dict[str, dict[int, dict[int, float]]], trained: dict[str, int] | None = None):
    """A matplotlib figure: one panel per model, exact accuracy against budget, one line per size.
    `curves[model][size][budget]`; `trained[model]` marks the budget the model was trained with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), sharey=True, squeeze=False)
    for ax, (model, per_size) in zip(axes[0], curves.items(), strict=True):
        for size, points in sorted(per_size.items()):
            budgets = sorted(points)
            ax.plot(budgets, [points[b] for b in budgets], marker="o", ms=3, label=f"size {size}")
        if trained and model in trained:
            ax.axvline(trained[model], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_title(model)
        ax.set_xlabel("steps (iterations)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("exact path accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
