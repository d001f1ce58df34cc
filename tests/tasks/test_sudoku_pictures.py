"""tasks/sudoku_pictures.py: a PNG of boards is written, readable, and marks wrong digits."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch
from matplotlib.colors import to_rgb

from irem.tasks.sudoku_boards import generate
from irem.tasks.sudoku_pictures import WRONG, _clashing, draw_boards


def has_red(image) -> bool:
    pixels = torch.from_numpy(image[..., :3].copy()).reshape(-1, 3)
    return bool(((pixels - torch.tensor(to_rgb(WRONG))).abs().max(1).values < 0.1).any())


def test_draw_boards_writes_a_png(tmp_path):
    boards = generate(6, 30, torch.Generator().manual_seed(0))
    predictions = boards.solutions.clone()
    blank = torch.nonzero(boards.puzzles[1] == 0).flatten()
    predictions[1, blank[0]] = predictions[1, blank[0]] % 9 + 1  # one wrong digit on board 1
    predictions[2, blank[:5]] = 0  # board 2 left partly blank
    path = draw_boards(boards.puzzles, predictions, boards.solutions, tmp_path / "pics" / "boards.png", n=4, columns=2)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert has_red(image), "the wrong digit is not drawn in red"
    assert not has_red(
        matplotlib.image.imread(draw_boards(boards.puzzles, boards.solutions, boards.solutions, tmp_path / "right.png"))
    )
    # without solutions, digits that clash in a unit are the wrong ones
    draw_boards(boards.puzzles, predictions, None, tmp_path / "no_solutions.png")
    assert (tmp_path / "no_solutions.png").stat().st_size > 0
    with pytest.raises(ValueError, match="6 puzzles for 5 predictions"):
        draw_boards(boards.puzzles, predictions[:5], None, tmp_path / "x.png")


def test_clashing_cells():
    board = torch.zeros(1, 81, dtype=torch.long)
    board[0, 0] = board[0, 4] = 7  # same row
    board[0, 10] = 3
    assert torch.nonzero(_clashing(board)[0]).flatten().tolist() == [0, 4]
