"""IRED's convolutional Sudoku energy: E(x, y) = ||f(x, y)||^2 / 81 for a residual conv net f.

The givens x and the candidate y ([N, 81, 9] each, a score per cell and digit) are stacked as 18
channels of a 9x9 image; a stem convolution lifts them to `width` channels, `depth` residual blocks
of two `kernel` x `kernel` convolutions follow, and a last convolution writes 9 channels. The
energy is the squared norm of that output per puzzle (IRED, Du et al. 2024: conv 18 -> 384, 6
residual blocks, conv -> 9); a squared norm is bounded below by zero, which the descent can reach.
The defaults are smaller than IRED's (width 64, 4 blocks, 3x3) so a CPU trains it in minutes.

`softmax` reads the candidate through a softmax over each cell's digits. Nothing bounds raw logits,
and under IREM's objective the descent pushed them, and the cross-entropy with them, without limit
within a few dozen iterations; read as probabilities, the candidate stays in the simplex whatever
the logits do (the graph energy reads them the same way). Off for IRED's +-1 relaxation, whose
answers are clamped to [-1, 1] instead.

`landscapes` > 0 makes it IRED's family of annealed landscapes (ired/landscapes.py): `step` is then
the landscape index, embedded into a gain and a bias on each block's second convolution, where
IRED's residual blocks take theirs. Off by default, so IREM checkpoints are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.ired.landscapes import LandscapeEmbedding
from irem.networks.sudoku import CELLS, DIGITS, check_board_tensor


class Residual(nn.Module):
    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(width, width, kernel, padding=kernel // 2)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        out = self.conv2(self.act(self.conv1(self.act(h))))
        if film is not None:
            gain, bias = film
            out = out * (1 + gain[:, :, None, None]) + bias[:, :, None, None]
        return h + out


class SudokuConvEnergy(EnergyFunction):
    def __init__(
        self, width: int = 64, depth: int = 4, kernel: int = 3, landscapes: int = 0, softmax: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(softmax, bool):
            raise ValueError(f"SudokuConvEnergy: softmax must be true or false, got {softmax!r}.")
        if isinstance(landscapes, bool) or not isinstance(landscapes, int) or landscapes < 0:
            raise ValueError(f"SudokuConvEnergy: landscapes must be a whole number >= 0, got {landscapes!r}.")
        for key, value in (("width", width), ("depth", depth), ("kernel", kernel)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SudokuConvEnergy: {key} must be an integer >= 1, got {value!r}.")
        if kernel % 2 == 0:
            raise ValueError(f"SudokuConvEnergy: kernel must be odd (a centred window), got {kernel}.")
        self.stem = nn.Conv2d(2 * DIGITS, width, kernel, padding=kernel // 2)
        self.blocks = nn.Sequential(*(Residual(width, kernel) for _ in range(depth)))
        self.head = nn.Conv2d(width, DIGITS, 1)
        self.landscapes = int(landscapes)
        self.softmax = softmax
        if self.landscapes:
            self.landscape = LandscapeEmbedding(self.landscapes, [width] * depth)

    @staticmethod
    def image(t: Tensor) -> Tensor:
        """[N, 81, 9] -> [N, 9 channels (digits), 9, 9]."""
        return t.reshape(t.shape[0], 9, 9, DIGITS).permute(0, 3, 1, 2)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        x = check_board_tensor("SudokuConvEnergy", x, "the givens x")
        y = check_board_tensor("SudokuConvEnergy", y, "the candidate y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"SudokuConvEnergy: {x.shape[0]} puzzles in x but {y.shape[0]} candidates in y.")
        if self.softmax:
            y = torch.softmax(y, dim=-1)
        h = self.stem(torch.cat([self.image(x.float()), self.image(y)], dim=1))
        if self.landscapes:
            for block, film in zip(self.blocks, self.landscape(step, h.shape[0], h.device), strict=True):
                h = block(h, film)
        else:
            h = self.blocks(h)
        out = self.head(h)
        return (out**2).flatten(1).sum(1) / CELLS
