"""A constraint-graph energy for Sudoku: every cell and digit scored from what its row, column and
box peers hold of that digit.

Each cell is joined to the 20 cells that share its row, column or box (networks/sudoku.py). For
cell c and digit d the energy reads the candidate's probability of d at c (softmax of the cell's
scores), whether d is given at c, and, for each of the three units separately, how much of d the
cell's peers in that unit hold (the sum of their probabilities of d) and how many of them have d
as a given. A small MLP, shared by all 729 (cell, digit) pairs, maps these features to a scalar,
and the energy of a puzzle is the sum. It is a factor graph whose factors are learned: the rules
of Sudoku are nowhere written in, but "this digit is already taken in my row" is one feature away,
and a descent step updates every cell from its peers at once, so more steps propagate further
(harder puzzles want more of them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.networks.mlp import mlp
from irem.networks.sudoku import check_board_tensor, unit_adjacency

FEATURES = 8  # own probability, own given, and per unit (row, column, box) the peers' probabilities and givens


class SudokuGraphEnergy(EnergyFunction):
    def __init__(self, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        for key, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SudokuGraphEnergy: {key} must be an integer >= 1, got {value!r}.")
        self.register_buffer("units", unit_adjacency(), persistent=False)  # [3, 81, 81]
        self.factor = mlp(FEATURES, width, depth, 1, "silu")  # the factor shared by every cell or pixel

    def features(self, x: Tensor, y: Tensor) -> Tensor:
        """[N, 81, 9, 8]: per cell and digit, its own probability and given, and per unit what its
        peers hold of that digit (probabilities, givens)."""
        p = torch.softmax(y, dim=-1)
        peers_p = torch.einsum("uij,njd->nuid", self.units, p)
        peers_x = torch.einsum("uij,njd->nuid", self.units, x)
        return torch.cat([p.unsqueeze(1), x.unsqueeze(1), peers_p, peers_x], dim=1).permute(0, 2, 3, 1)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        x = check_board_tensor("SudokuGraphEnergy", x, "the givens x").float()
        y = check_board_tensor("SudokuGraphEnergy", y, "the candidate y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"SudokuGraphEnergy: {x.shape[0]} puzzles in x but {y.shape[0]} candidates in y.")
        return self.factor(self.features(x, y)).squeeze(-1).sum(dim=(1, 2))
