"""The iterative residual decoder: y <- y + f(y, x), from the same uniform start as descent.

It has IREM's shape without the energy: the same start, the same number of refinements, an MLP of
the same kind, but the update is predicted directly instead of being a gradient of a scalar
landscape. Any gain of the energy model over it is the gain of the landscape itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from irem.baselines.common import (
    answer_shape,
    budget_predictions,
    check_activation,
    check_sizes,
    flat_input,
    iterates_loss,
)
from irem.networks.mlp import mlp
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class IterativeResidual(Predictor):
    """f = MLP(concat(y, x)) with `depth` hidden layers of `width`; `steps` updates in training.

    Training unrolls every update and backpropagates through all of them (no truncation), from
    the task's `init_answer`, so the start is drawn exactly as an energy model's is.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        width: int = 512,
        depth: int = 2,
        activation: str = "relu",
        steps: int = 10,
        supervise_every_step: bool = False,
    ) -> None:
        super().__init__()
        check_sizes("IterativeResidual", x_dim=x_dim, y_dim=y_dim, width=width, depth=depth, steps=steps)
        check_activation("IterativeResidual", activation)
        self.x_dim, self.y_dim, self.steps = x_dim, y_dim, steps
        self.supervise_every_step = bool(supervise_every_step)
        self.update = mlp(y_dim + x_dim, width, depth, y_dim, activation)
        # Start as the identity map: ten unrolled random updates compound (on 20x20 inverse the
        # first loss is ~30x that of y0 itself) and the first hundred Adam steps only undo them.
        nn.init.zeros_(self.update[-1].weight)
        nn.init.zeros_(self.update[-1].bias)

    @property
    def default_budget(self) -> int:
        return self.steps

    def iterate(self, x: Tensor, y0: Tensor, steps: int) -> Iterator[Tensor]:
        """The flat iterate after 0, 1, ..., `steps` updates, lazily (evaluation keeps few)."""
        y = y0
        yield y
        for _ in range(steps):
            y = y + self.update(torch.cat([y, x], dim=-1))
            yield y

    def _start(self, task: Task, problem: Problem, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = flat_input("IterativeResidual", self.x_dim, task, problem)
        y0 = task.init_answer(problem, generator).to(device=x.device, dtype=x.dtype)
        return x, y0.reshape(x.shape[0], -1)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        shape = answer_shape("IterativeResidual", self.y_dim, task, problem)
        x, y0 = self._start(task, problem, generator)
        ys = list(self.iterate(x, y0, self.steps))[1:]
        return iterates_loss(task, problem, ys, shape, self.supervise_every_step)

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="IterativeResidual.predict")
        shape = answer_shape("IterativeResidual", self.y_dim, task, problem)
        with torch.no_grad():
            x, y0 = self._start(task, problem, generator)
        return budget_predictions(self.iterate(x, y0, wanted[-1]), wanted, shape)
