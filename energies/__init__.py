"""Learned energy landscapes E(x, y)."""

from irem.energies.gnn import GNNEnergy
from irem.energies.mlp import MLPEnergy

__all__ = ["GNNEnergy", "MLPEnergy"]
