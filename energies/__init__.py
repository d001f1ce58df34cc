"""Learned energy landscapes E(x, y)."""

from energies.mlp import MLPEnergy

__all__ = ["MLPEnergy"]
