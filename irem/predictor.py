"""The `Predictor` interface shared by energy models and baselines.

Training and evaluation only talk to predictors: a loss on a batch, and answers at a list of
step budgets. An energy model answers by descent; a feed-forward baseline ignores the budget;
a recurrent baseline runs that many iterations. The same commands therefore train and compare
them all.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irem.budgets import check_budgets  # noqa: F401  (re-exported: predictors check their budgets with it)
from irem.problem import Problem
from irem.task import Task


@dataclass
class Predictions:
    """Answers keyed by label: the budget as a string ("10") or "best" (lowest energy)."""

    answers: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)


class Predictor(nn.Module, abc.ABC):
    honours_constraint: ClassVar[bool] = False
    """Whether `predict` already keeps every answer inside the problem's constraint (fixed entries,
    projection), as an energy model's descent does at every step; otherwise `predict_constrained` applies it."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; a model whose parts want their own learning rate (an energy
        model's learnable step size) splits them here. Every group's lr is its base lr, which the
        trainer's warm-up and decay then scale."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    @property
    def default_budget(self) -> int:
        """The number of steps the model is trained with; validation reports this budget."""
        return 1

    @abc.abstractmethod
    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss to minimise and numbers worth logging."""

    @abc.abstractmethod
    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        """Answers after each budget in `budgets` (and "best" where the model can verify)."""


def predict_constrained(
    model: Predictor, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator
) -> Predictions:
    """`model.predict`, with every answer inside the problem's constraint: a direct predictor (a
    baseline, a model of one's own) is judged on the terms every solver of an energy model keeps,
    with the givens set and the answer projected (onto the simplex, a box), so a task never has to
    project again in its metrics for the comparison to be fair."""
    predictions = model.predict(task, problem, budgets, generator)
    constraint = problem.constraint
    if model.honours_constraint or constraint is None or (constraint.mask is None and constraint.project is None):
        return predictions
    with torch.no_grad():
        constrained = {key: constraint.apply(y) for key, y in predictions.answers.items()}
    return Predictions(answers=constrained, info=predictions.info)
