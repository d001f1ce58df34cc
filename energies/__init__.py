"""Learned energy landscapes E(x, y)."""

from energies.gnn import GNNEnergy
from energies.mlp import MLPEnergy

__all__ = ["GNNEnergy", "MLPEnergy"]
