"""Pictures of Sudoku boards: a PNG with one small grid per board, to see what a model fills in.

Givens are black, predicted digits blue, and wrong ones red: against the known solution when one is
given, else those that repeat a digit in a row, column or box.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from irem.tasks.sudoku_boards import UNITS, board_metrics, check_boards

GIVEN, PREDICTED, WRONG = "black", "tab:blue", "tab:red"


def _clashing(boards: Tensor) -> Tensor:
    """[N, 81] bool: cells whose digit occurs more than once in one of their units."""
    units = torch.as_tensor(UNITS)
    onehot = torch.nn.functional.one_hot(boards, 10)[..., 1:]  # [N, 81, 9]
    per_unit = onehot[:, units]  # [N, 27, 9 cells, 9 digits]
    repeated = (per_unit.sum(2, keepdim=True) > 1) & per_unit.bool()
    out = torch.zeros(boards.shape, dtype=torch.bool)
    for u in range(units.shape[0]):
        out[:, units[u]] |= repeated[:, u].any(-1)
    return out


def draw_boards(
    puzzles: Tensor,
    predictions: Tensor,
    solutions: Tensor | None,
    path: str | Path,
    n: int = 16,
    columns: int = 4,
) -> Path:
    """Draw the first `n` boards into a PNG at `path` and return the path.

    Each grid shows the puzzle's givens in black and the prediction's other digits in blue, or red
    where wrong (blanks of the prediction stay empty); its title says solved, or how many cells
    are wrong (or blank). `solutions` may be None for puzzles without a known solution. A cell the puzzle
    gives always shows the given (descent keeps givens fixed); a prediction that overwrote one
    is "not solved" in the title.
    """
    # matplotlib loads only when a picture is drawn; a Figure on the Agg canvas, never pyplot, so no
    # window or global backend is involved (as irem/plots.py)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    puzzles = check_boards(puzzles, "draw_boards: puzzles")[:n].cpu()
    predictions = check_boards(predictions, "draw_boards: predictions")[:n].cpu()
    if puzzles.shape != predictions.shape:
        raise ValueError(f"draw_boards: {puzzles.shape[0]} puzzles for {predictions.shape[0]} predictions.")
    if solutions is not None:
        solutions = check_boards(solutions, "draw_boards: solutions")[:n].cpu()
        wrong = (predictions != solutions) & (predictions > 0)
        solved = board_metrics(puzzles, predictions, solutions)["solved"].bool()
    else:
        wrong = _clashing(predictions)
        solved = (predictions > 0).all(1) & ~wrong.any(1)
    wrong &= puzzles == 0
    count = puzzles.shape[0]
    columns = max(1, min(int(columns), count))
    rows = -(-count // columns)
    fig = Figure(figsize=(2.2 * columns, 2.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= count:
            continue
        ax.set_xlim(0, 9)
        ax.set_ylim(9, 0)
        ax.set_aspect("equal")
        for i in range(10):
            width = 1.6 if i % 3 == 0 else 0.4
            ax.plot([0, 9], [i, i], color="black", linewidth=width)
            ax.plot([i, i], [0, 9], color="black", linewidth=width)
        for c in range(81):
            given, digit = int(puzzles[k, c]), int(predictions[k, c])
            shown = given or digit
            if shown:
                color = GIVEN if given else (WRONG if bool(wrong[k, c]) else PREDICTED)
                weight = "bold" if given else "normal"
                ax.text(
                    c % 9 + 0.5,
                    c // 9 + 0.55,
                    str(shown),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=color,
                    weight=weight,
                )
        errors = int(wrong[k].sum())
        blanks = int((predictions[k] == 0).sum())
        title = (
            "solved"
            if bool(solved[k])
            else f"{errors} wrong"
            if errors
            else f"{blanks} blank"
            if blanks
            else "not solved"
        )
        ax.set_title(f"#{k}: {title}", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
