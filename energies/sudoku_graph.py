"""A constraint-graph energy for Sudoku: message passing over the 81 cells and their 20 peers.

Each cell starts from an embedding of its given (one-hot, zeros if blank) and the candidate's
scores for it; `depth` rounds of RRN-style message passing (networks/sudoku.py: messages from
every cell sharing a row, column or box, the cell's input re-injected each round) follow, and each
cell reads out a scalar. The energy of a puzzle is the sum over its cells: a low energy where no
cell sees a conflict with its peers. `candidate: softmax` reads each cell's scores as a
distribution over digits, so a sum over peers counts how much of each digit they already hold. The candidate enters every round, so the gradient a solver
follows reaches each cell through its peers' views of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.networks.sudoku import DIGITS, PeerMessages, check_board_tensor


class SudokuGraphEnergy(EnergyFunction):
    def __init__(self, width: int = 64, depth: int = 4, candidate: str = "softmax") -> None:
        super().__init__()
        if candidate not in ("softmax", "raw"):
            raise ValueError(f"SudokuGraphEnergy: unknown candidate '{candidate}'. Valid choices: softmax, raw.")
        self.candidate = candidate
        for key, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SudokuGraphEnergy: {key} must be an integer >= 1, got {value!r}.")
        self.embed = nn.Linear(2 * DIGITS, width)
        self.rounds = nn.ModuleList(PeerMessages(width, 2 * DIGITS) for _ in range(depth))
        self.readout = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        x = check_board_tensor("SudokuGraphEnergy", x, "the givens x")
        y = check_board_tensor("SudokuGraphEnergy", y, "the candidate y")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"SudokuGraphEnergy: {x.shape[0]} puzzles in x but {y.shape[0]} candidates in y.")
        c = torch.softmax(y, dim=-1) if self.candidate == "softmax" else y
        u = torch.cat([x.float(), c], dim=-1)  # [N, 81, 18]
        h = self.embed(u)
        for round_ in self.rounds:
            h = round_(h, u)
        return self.readout(h).squeeze(-1).sum(1)
