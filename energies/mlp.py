"""IREM's MLP energy: E(x, y) = MLP(concat(y, x)) -> one scalar per instance.

Defaults follow the paper: three hidden layers of 512 with swish (SiLU), ~0.94M parameters on
20x20 matrix inverse. Inputs are flattened, so any task whose x and y are fixed-size tensors fits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction

ACTIVATIONS = {
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation '{name}'. Valid choices: {', '.join(sorted(ACTIVATIONS))}.")
    return ACTIVATIONS[name]()


def mlp(in_dim: int, width: int, depth: int, out_dim: int, activation: str) -> nn.Sequential:
    """`depth` hidden layers of `width` units; shared by energies and baselines."""
    if depth < 1 or width < 1:
        raise ValueError(f"mlp: depth and width must be >= 1, got depth={depth}, width={width}.")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width), make_activation(activation)]
        d = width
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class MLPEnergy(EnergyFunction):
    def __init__(self, x_dim: int, y_dim: int, width: int = 512, depth: int = 3, activation: str = "swish") -> None:
        super().__init__()
        self.x_dim, self.y_dim = int(x_dim), int(y_dim)
        self.net = mlp(self.x_dim + self.y_dim, width, depth, 1, activation)

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        n = y.shape[0]
        y_flat, x_flat = y.reshape(n, -1), x.reshape(x.shape[0], -1)
        if y_flat.shape[1] != self.y_dim or x_flat.shape[1] != self.x_dim or x_flat.shape[0] != n:
            raise ValueError(
                f"MLPEnergy(x_dim={self.x_dim}, y_dim={self.y_dim}) got x of shape {tuple(x.shape)} "
                f"and y of shape {tuple(y.shape)}"
            )
        return self.net(torch.cat([y_flat, x_flat], dim=-1)).squeeze(-1)
