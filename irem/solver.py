"""The `Solver` interface: how to descend an energy."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.problem import SolveResult


class Solver(nn.Module, abc.ABC):
    """Descends `energy` in y from `y0`. A module so a learnable step size trains with the energy."""

    max_steps: int
    # True for solvers that decide per instance how many steps to take (solvers/adaptive.py):
    # studies run them once at their own max_steps instead of at every budget
    adaptive: bool = False

    @abc.abstractmethod
    def solve(
        self,
        energy: EnergyFunction,
        x: Any,
        y0: Tensor,
        budget: int | None = None,
        *,
        segment: Tensor | None = None,
        differentiable: bool = False,
        record_history: bool = False,
        record_trajectory: bool = False,
        snapshots: Iterable[int] = (),
        generator: torch.Generator | None = None,
    ) -> SolveResult:
        """Run at most `budget` steps (default `max_steps`).

        `differentiable` keeps the graph of the steps the solver's truncation allows, so a loss on
        the result trains the energy. `snapshots` asks for the iterate after each listed number of
        steps, so one run reports several budgets.
        """

    def with_base(self, base: Solver) -> Solver:
        """This solver, for a model trained with `base`. A solver that wraps another one and was
        configured without it (solvers/adaptive.py) wraps `base`, keeping the trained step size."""
        return self
