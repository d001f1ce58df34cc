"""MLP stacks and activations, shared by the MLP energies and the direct baselines."""

from __future__ import annotations

from torch import nn

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
