"""A fully convolutional maze energy: E(x, y) = sum over pixels of ||f(x, y)||^2 for a residual conv net f.

The maze image x (3 channels) and the candidate path y ([N, H, W, 2] class scores, read as
probabilities and zeroed on walls) are stacked as 5 channels; a stem convolution lifts them to
`width` channels, `depth` residual blocks of two 3 x 3 convolutions follow (the blocks of
energies/sudoku_conv.py), and a 1 x 1 convolution writes `heads` channels whose squares are summed
over the pixels. No layer depends on the maze's size, so the same weights score a 9 x 9 and a 59 x 59
maze, and a sum (not a mean) over pixels keeps the gradient at a pixel independent of the size: a
descent step moves the answer the same way wherever the maze is larger. The gradient at a pixel reads
the pixels within twice f's receptive field (2 * (2 * depth + 1) units), so each step carries what it
knows that far along a corridor and a longer path asks for more steps.

`landscapes` > 0 makes it IRED's family of annealed landscapes (ired/landscapes.py), conditioned as
the Sudoku conv energy is (a gain and a bias on each block's second convolution); `softmax: false`
reads the raw scores, for IRED's +-1 relaxation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irem.energies.sudoku_conv import Residual
from irem.energy import EnergyFunction
from irem.ired.landscapes import LandscapeEmbedding
from irem.networks.maze import candidate_channels, check_maze_answer, check_maze_input


class MazeConvEnergy(EnergyFunction):
    def __init__(
        self, width: int = 32, depth: int = 3, heads: int = 4, landscapes: int = 0, softmax: bool = True
    ) -> None:
        super().__init__()
        for key, value in (("width", width), ("depth", depth), ("heads", heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MazeConvEnergy: {key} must be an integer >= 1, got {value!r}.")
        if isinstance(landscapes, bool) or not isinstance(landscapes, int) or landscapes < 0:
            raise ValueError(f"MazeConvEnergy: landscapes must be a whole number >= 0, got {landscapes!r}.")
        if not isinstance(softmax, bool):
            raise ValueError(f"MazeConvEnergy: softmax must be true or false, got {softmax!r}.")
        self.stem = nn.Conv2d(5, width, 3, padding=1)
        self.blocks = nn.ModuleList(Residual(width, 3) for _ in range(depth))
        self.head = nn.Conv2d(width, heads, 1)
        self.landscapes, self.softmax = int(landscapes), softmax
        if self.landscapes:
            self.landscape = LandscapeEmbedding(self.landscapes, [width] * depth)

    def energy(self, x: Any, y: Tensor, step: Any = 0) -> Tensor:
        x = check_maze_input("MazeConvEnergy", x)
        y = check_maze_answer("MazeConvEnergy", x, y)
        h = self.stem(torch.cat([x.to(y.dtype), candidate_channels(x, y, self.softmax)], dim=1))
        films = self.landscape(step, h.shape[0], h.device) if self.landscapes else [None] * len(self.blocks)
        for block, film in zip(self.blocks, films, strict=True):
            h = block(h, film)
        return (self.head(h) ** 2).flatten(1).sum(1)
