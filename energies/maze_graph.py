"""A grid-graph maze energy: every maze unit scored from what it and its neighbours hold of the path.

The maze is a graph whose nodes are its pixels and whose edges join the four neighbours. For each
pixel the energy reads its probability of being on the path (softmax of its two scores, zero on a
wall), whether it is open, the start or the goal, and, over its four neighbours at distance 1 and at
distance 2 separately, the sum of their path probabilities and how many of them are open (distance 2
is the next unit in deep-thinking's 2 x 2 image layout). A small MLP, shared by every pixel, maps
these features to a scalar, and the energy of a maze is the sum over pixels: a factor graph with one
learned factor per node, as energies/sudoku_graph.py is for Sudoku's constraint graph. In a perfect
maze the path is exactly the open units where start and goal have one path neighbour and every other
path unit two, so the right factor is one feature away; a descent step updates every pixel from its
neighbours at once, and more steps carry the path's evidence further. It reads a maze of any size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from irem.energy import EnergyFunction
from irem.networks.maze import candidate_channels, check_maze_answer, check_maze_input, open_mask
from irem.networks.mlp import mlp

FEATURES = 8  # path probability, open, start, goal; per distance (1, 2): neighbours' path probability, open count


def neighbour_sum(t: Tensor, d: int) -> Tensor:
    """[N, C, H, W]: the sum of the four neighbours at distance `d` (zero outside the image)."""
    p = F.pad(t, (d, d, d, d))
    h, w = t.shape[-2:]
    return p[..., :h, d : d + w] + p[..., 2 * d :, d : d + w] + p[..., d : d + h, :w] + p[..., d : d + h, 2 * d :]


class MazeGraphEnergy(EnergyFunction):
    def __init__(self, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        for key, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MazeGraphEnergy: {key} must be an integer >= 1, got {value!r}.")
        self.factor = mlp(FEATURES, width, depth, 1, "silu")  # the factor shared by every cell or pixel

    def features(self, x: Tensor, y: Tensor) -> Tensor:
        """[N, H, W, 8]: per pixel its own path probability and kind, and its neighbours' (distance 1, 2)."""
        p = candidate_channels(x, y, softmax=True)[:, 1:2]
        free = open_mask(x)
        start = ((x[:, 1:2] > 0.5) & (x[:, 0:1] < 0.5)).to(p.dtype)
        goal = ((x[:, 0:1] > 0.5) & (x[:, 1:2] < 0.5)).to(p.dtype)
        near = [neighbour_sum(t, d) for d in (1, 2) for t in (p, free)]
        return torch.cat([p, free.to(p.dtype), start, goal, *near], dim=1).permute(0, 2, 3, 1)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        x = check_maze_input("MazeGraphEnergy", x)
        y = check_maze_answer("MazeGraphEnergy", x, y)
        per_pixel = self.factor(self.features(x.to(y.dtype), y)).squeeze(-1)
        return (per_pixel * open_mask(x).squeeze(1).to(per_pixel.dtype)).flatten(1).sum(1)
