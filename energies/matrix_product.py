"""An MLP energy that also sees the products of the candidate with the input matrices.

For square-matrix tasks (x: k matrices of size n x n, y: one n x n matrix) the energy is

    E(x, y) = MLP(concat(y, x, X_1 Y, Y X_1, ..., X_k Y, Y X_k))

IREM's MLP on concat(y, x) has to build every product of an input entry with an answer entry out
of additive units; matrix inverse is defined by one (A Y = I), and the plain MLP leaves
ill-conditioned instances unsolved (docs/results/adaptive.md). Handing it the products is a
multiplicative-interaction layer: the energy is still learned end to end and knows nothing of the
task, but a residual such as A Y - I is now one linear map of its input. Its descent then inherits
the conditioning of the input matrix, which is what makes harder instances take more steps.

The MLP part is an `MLPEnergy` over the features, so it keeps the split first layer (the x half is
computed once per descent by `prepare`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from irem.energies.mlp import MLPEnergy, PreparedInput
from irem.energy import EnergyFunction


class MatrixProductEnergy(EnergyFunction):
    """An `MLPEnergy` over [y, x, X_i Y, Y X_i]; x_dim must be k * y_dim with y_dim = n * n."""

    def __init__(self, x_dim: int, y_dim: int, width: int = 512, depth: int = 3, activation: str = "swish") -> None:
        size = math.isqrt(int(y_dim))
        if size * size != y_dim or x_dim % y_dim != 0 or x_dim == 0:
            raise ValueError(
                f"MatrixProductEnergy needs a square-matrix answer (y_dim = n*n) and x made of whole n x n "
                f"matrices (x_dim = k*y_dim, k >= 1); got x_dim={x_dim}, y_dim={y_dim}. "
                "For other shapes use energy=mlp."
            )
        super().__init__()
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.size, self.matrices = size, self.x_dim // self.y_dim
        self.mlp = MLPEnergy(self.x_dim, self.y_dim * (1 + 2 * self.matrices), width, depth, activation)

    def prepare(self, x: Tensor) -> PreparedInput:
        return self.mlp.prepare(x)

    def features(self, x: Tensor, y: Tensor) -> Tensor:
        n, s = y.shape[0], self.size
        if y.reshape(n, -1).shape[1] != self.y_dim or x.reshape(x.shape[0], -1).shape[1] != self.x_dim:
            raise ValueError(
                f"MatrixProductEnergy(x_dim={self.x_dim}, y_dim={self.y_dim}) got x of shape "
                f"{tuple(x.shape)} and y of shape {tuple(y.shape)}"
            )
        ym = y.reshape(n, 1, s, s)
        xm = x.reshape(x.shape[0], self.matrices, s, s)
        products = torch.cat([xm @ ym, ym @ xm], dim=1)  # [n, 2k, s, s]
        return torch.cat([y.reshape(n, -1), products.reshape(n, -1)], dim=1)

    def energy(self, x: Tensor | PreparedInput, y: Tensor, step: int = 0) -> Tensor:
        raw = x.x if isinstance(x, PreparedInput) else x
        return self.mlp.energy(x, self.features(raw, y), step)
