"""IREM's feed-forward baseline: y = MLP(x), one pass, no iteration.

The control for "does more computation help": it spends the same compute on every instance, so
its answer is the same at every step budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from irem.baselines.common import answer_shape, check_activation, check_sizes, flat_input, keep_fixed, mean_loss
from irem.networks.mlp import mlp
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class FeedForward(Predictor):
    """`depth` hidden layers of `width` units (IREM: 3 x 512 ReLU) from flat x to flat y."""

    def __init__(self, x_dim: int, y_dim: int, width: int = 512, depth: int = 3, activation: str = "relu") -> None:
        super().__init__()
        check_sizes("FeedForward", x_dim=x_dim, y_dim=y_dim, width=width, depth=depth)
        check_activation("FeedForward", activation)
        self.x_dim, self.y_dim = x_dim, y_dim
        self.net = mlp(x_dim, width, depth, y_dim, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        shape = answer_shape("FeedForward", self.y_dim, task, problem)
        y = self(flat_input("FeedForward", self.x_dim, task, problem))
        return mean_loss(task, problem, y, shape), {}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="FeedForward.predict")
        shape = answer_shape("FeedForward", self.y_dim, task, problem)
        # Evaluation leaves autograd on (descent needs it); a direct predictor does not.
        with torch.no_grad():
            y = keep_fixed(problem, self(flat_input("FeedForward", self.x_dim, task, problem)).reshape(shape))
        return Predictions(answers={str(b): y for b in wanted}, info={"steps_mean": {str(b): 1.0 for b in wanted}})
