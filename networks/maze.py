"""Network pieces for mazes shared by their energies and baselines: checks of the image and answer
tensors, the candidate path as image channels, and deep-thinking's residual block.

Everything here is fully convolutional: no layer's shape depends on the maze's size, so one set of
weights reads a 9 x 9 maze and a 59 x 59 one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_maze_input(owner: str, x: object) -> Tensor:
    """x must be a colour image batch [N, 3, H, W] (the maze task's input)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{owner} reads maze images [N, 3, H, W] (task=maze), got x of shape {shape}.")
    return x


def check_maze_answer(owner: str, x: Tensor, y: Tensor) -> Tensor:
    """y must hold two class scores per pixel of x: [N, H, W, 2]."""
    want = (x.shape[0], x.shape[2], x.shape[3], 2)
    if not isinstance(y, Tensor) or tuple(y.shape) != want:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{owner}: a candidate for mazes {tuple(x.shape)} must have shape {want}, got {shape}.")
    return y


def open_mask(x: Tensor) -> Tensor:
    """[N, 1, H, W]: 1 on pixels that are not wall."""
    return (x.amax(dim=1, keepdim=True) > 0.5).to(x.dtype)


def candidate_channels(x: Tensor, y: Tensor, softmax: bool) -> Tensor:
    """The candidate [N, H, W, 2] as two image channels [N, 2, H, W], zero on walls: class
    probabilities (softmax) or the raw scores (IRED's +-1 relaxation)."""
    c = torch.softmax(y, dim=-1) if softmax else y
    return c.permute(0, 3, 1, 2) * open_mask(x).to(c.dtype)


class BasicBlock(nn.Module):
    """deep-thinking's residual block (blocks.py BasicBlock2D): relu(x + conv(relu(conv(x)))), no bias."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        return F.relu(h + self.conv2(F.relu(self.conv1(h))))


def head(width: int) -> nn.Sequential:
    """deep-thinking's output head: three 3 x 3 convolutions, width -> 32 -> 8 -> 2 classes, no bias."""
    return nn.Sequential(
        nn.Conv2d(width, 32, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(32, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 2, 3, padding=1, bias=False),
    )
