"""A recurrent relational network for Sudoku (Palm, Paquet and Winther 2018): message passing over
the 81 cells and their 20 peers, read out and supervised after every step.

Each cell holds a hidden state started from its given (one-hot, zeros if blank) and updated every
step from pairwise messages of its peers (networks/sudoku.py, `pairwise`), with its own input
re-injected; a shared linear readout gives its digit scores. Training unrolls `steps` steps and
averages the task's loss over all of them (RRN: a loss at every step), so the answer is usable at
any step and more steps can be run at test time. The givens are known, so every answer keeps them
(the problem's constraint), as the energy models' solvers do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from irem.baselines.common import budget_predictions, check_sizes
from irem.networks.sudoku import DIGITS, PeerMessages, check_board_tensor
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class RRN(Predictor):
    def __init__(self, width: int = 96, steps: int = 16) -> None:
        super().__init__()
        check_sizes("RRN", width=width, steps=steps)
        self.width, self.steps = width, steps
        self.embed = nn.Sequential(nn.Linear(DIGITS, width), nn.ReLU(), nn.Linear(width, width))
        self.round = PeerMessages(width, DIGITS, pairwise=True)  # shared by every step: recurrent
        self.readout = nn.Linear(width, DIGITS)

    @property
    def default_budget(self) -> int:
        return self.steps

    def iterate(self, problem: Problem, steps: int) -> Iterator[Tensor]:
        """The digit scores [N, 81, 9] after 0, 1, ..., `steps` steps, the givens kept."""
        u = check_board_tensor("RRN", problem.x, "the givens x").float()
        h = self.embed(u)
        for t in range(steps + 1):
            if t:
                h = self.round(h, u)
            y = self.readout(h)
            yield y if problem.constraint is None else problem.constraint.apply(y)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        losses = [task.loss(problem, y).mean() for y in list(self.iterate(problem, self.steps))[1:]]
        return torch.stack(losses).mean(), {"loss_final": float(losses[-1].detach())}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="RRN.predict")
        return budget_predictions(self.iterate(problem, wanted[-1]), wanted, None)
