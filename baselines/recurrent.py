"""IREM's recurrent baseline: an LSTM cell iterated on the problem, read out after every step.

It can spend more iterations at test time than in training, like descent on an energy, but has no
energy to tell it when it is right; comparing the two at the same budgets isolates what the
learned landscape adds over plain recurrence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from irem.baselines.common import (
    answer_shape,
    budget_predictions,
    check_sizes,
    flat_input,
    iterates_loss,
)
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class Recurrent(Predictor):
    """LSTMCell(hidden) fed concat(x, previous answer) each iteration; a shared linear readout.

    The readout of the zero initial state is the answer after 0 iterations, and each iteration
    sees the answer it gave last, so the cell can refine an answer rather than only its memory.
    Training unrolls `steps` iterations and backpropagates through all of them.
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden: int = 196, steps: int = 10, supervise_every_step: bool = False
    ) -> None:
        super().__init__()
        check_sizes("Recurrent", x_dim=x_dim, y_dim=y_dim, hidden=hidden, steps=steps)
        self.x_dim, self.y_dim, self.hidden, self.steps = x_dim, y_dim, hidden, steps
        self.supervise_every_step = bool(supervise_every_step)
        self.cell = nn.LSTMCell(x_dim + y_dim, hidden)
        self.readout = nn.Linear(hidden, y_dim)

    @property
    def default_budget(self) -> int:
        return self.steps

    def iterate(self, x: Tensor, steps: int) -> Iterator[Tensor]:
        """The flat answer after 0, 1, ..., `steps` iterations, lazily (evaluation keeps few)."""
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        y = self.readout(h)
        yield y
        for _ in range(steps):
            h, c = self.cell(torch.cat([x, y], dim=-1), (h, c))
            y = self.readout(h)
            yield y

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        shape = answer_shape("Recurrent", self.y_dim, task, problem)
        ys = list(self.iterate(flat_input("Recurrent", self.x_dim, task, problem), self.steps))[1:]
        return iterates_loss(task, problem, ys, shape, self.supervise_every_step)

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="Recurrent.predict")
        shape = answer_shape("Recurrent", self.y_dim, task, problem)
        with torch.no_grad():
            x = flat_input("Recurrent", self.x_dim, task, problem)
        return budget_predictions(self.iterate(x, wanted[-1]), wanted, shape)
