"""A recurrent relational network for Sudoku (Palm, Paquet and Winther 2018): message passing over
the 81 cells and their 20 peers, read out and supervised after every step.

Each cell holds an LSTM state and its embedded input (the given one-hot, zeros if blank); the
state's output starts at that input squashed to (-1, 1), so the first messages already carry the
givens. Every step sums pairwise messages MLP([h_i, h_j]) from the cell's 20 peers
(networks/sudoku.py), mixes them with the input and feeds that to an LSTM cell shared by all cells
and steps, as in the paper; a shared linear readout gives the digit scores. The LSTM's gates keep
the state bounded, so it can run for more steps than it was trained for (a plain residual update
grew without bound past the trained steps). Training unrolls `steps` steps and
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
        self.messages = PeerMessages(width)  # shared by every step: recurrent
        self.mix = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, width))
        self.cell = nn.LSTMCell(width, width)
        self.readout = nn.Linear(width, DIGITS)

    @property
    def default_budget(self) -> int:
        return self.steps

    def iterate(self, problem: Problem, steps: int) -> Iterator[Tensor]:
        """The digit scores [N, 81, 9] after 0, 1, ..., `steps` steps, the givens kept."""
        u = check_board_tensor("RRN", problem.x, "the givens x").float()
        x = self.embed(u)
        n, cells, width = x.shape
        h, c = torch.tanh(x).reshape(n * cells, width), x.new_zeros(n * cells, width)
        for t in range(steps + 1):
            if t:
                m = self.messages(h.view(n, cells, width))
                h, c = self.cell(self.mix(torch.cat([x, m], dim=-1)).view(n * cells, width), (h, c))
            y = self.readout(h.view(n, cells, width))
            yield y if problem.constraint is None else problem.constraint.apply(y)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        losses = [task.loss(problem, y).mean() for y in list(self.iterate(problem, self.steps))[1:]]
        return torch.stack(losses).mean(), {"loss_final": float(losses[-1].detach())}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="RRN.predict")
        return budget_predictions(self.iterate(problem, wanted[-1]), wanted, None)
