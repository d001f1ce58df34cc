"""The `Objective` interface: what an energy model minimises on a training batch.

An objective is a function of (task, energy, solver, problem): IREM's runs the solver from a start
and takes the task loss of the final iterate; IRED's denoises and contrasts noised answers; EBT's
supervises every step. Objectives live in objectives/ and are chosen by the config group
`objective/`; `EnergyModel` calls the chosen one and keeps what is common (the replay buffer, the
parameter groups, the logs).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import Problem, SolveResult
from irem.solver import Solver
from irem.task import Task


@dataclass
class TrainingBatch:
    """A training batch as an objective sees it.

    `problem` is what the descent solves (the sampled instances, part of them replaced by replayed
    ones) and `y0` where it starts (a replayed instance: where it was left); `fresh` is the batch as
    the task sampled it, for terms that want true pairs only.
    """

    problem: Problem
    y0: Tensor
    fresh: Problem


@dataclass
class ObjectiveResult:
    """The scalar to minimise, the descent it ran (whose final iterates the replay buffer keeps;
    None for an objective that runs none) and numbers worth logging."""

    loss: Tensor
    result: SolveResult | None = None
    logs: dict[str, float] = field(default_factory=dict)


class Objective(abc.ABC):
    """A training objective. Not a module: it holds settings, never weights, so a model's state
    (and its checkpoints) is the same whichever objective trained it."""

    def check_energy(self, energy: EnergyFunction) -> None:  # noqa: B027  (an optional hook)
        """Refuse, before any training, an energy this objective cannot train (with the fix)."""

    @abc.abstractmethod
    def loss(
        self, task: Task, energy: EnergyFunction, solver: Solver, batch: TrainingBatch, generator: torch.Generator
    ) -> ObjectiveResult:
        """The loss on `batch`, descending `energy` with `solver`; `generator` draws any noise."""
