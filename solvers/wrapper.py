"""`WrapperSolver`: the bookkeeping shared by solvers that drive another descent solver.

Adaptive halting and best-of-N change how a descent is run at inference, not how it steps, so
they wrap a descent solver. Two rules hold for every wrapper: training is never wrapped (a
differentiable solve, the IREM loss, goes to the wrapped solver unchanged), and a wrapper
configured without a descent (`descent: null`) takes the solver of the model it evaluates
(`with_base`), keeping that model's trained step size.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from typing import Any

from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import SolveResult
from irem.solver import Solver, SolveRequest


class WrapperSolver(Solver):
    config_name = "a wrapper"  # how `irem-eval solver=...` names it, for the error message

    def __init__(self, descent: Solver | None = None) -> None:
        super().__init__()
        self.descent = descent

    def with_base(self, base: Solver) -> Solver:
        if self.descent is None:
            self.descent = base
        return self

    def for_energy(self, energy: EnergyFunction) -> Solver:
        if self.descent is not None:
            self.descent = self.descent.for_energy(energy)
        return self

    def with_settings(self, changes: dict[str, Any]) -> Solver:
        """Settings change the descent this wrapper runs (its own are its config's)."""
        self.descent = self._wrapped().with_settings(changes)
        return self

    def describe(self) -> str:
        rules = getattr(self, "rules", None)
        own = {k: v for k, v in self.settings().items() if k not in ("descent", "rules")}
        shown = ", ".join(f"{k}={v}" for k, v in own.items())
        shown += (", rules=" + "+".join(type(r).__name__ for r in rules)) if rules else ""
        head = f"{type(self).__name__}({shown})"
        return head if self.descent is None else f"{head} over {self.descent.describe()}"

    def _wrapped(self) -> Solver:
        if self.descent is None:
            raise ValueError(
                f"{type(self).__name__} has no descent solver: give descent=GradientDescent(...), or evaluate a "
                f"trained model with solver={self.config_name} so it wraps the model's own solver."
            )
        return self.descent

    @property
    def step_size(self) -> Tensor | None:
        return None if self.descent is None else self.descent.step_size

    def scaled_step(self, factor: float) -> AbstractContextManager[None]:
        return self._wrapped().scaled_step(factor)

    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        if request.differentiable:  # training: the wrapped solver's plain descent, its own budget
            return self._wrapped().run(energy, x, y0, budget, request)
        return self.run_inference(energy, x, y0, budget, request)

    @abc.abstractmethod
    def run_inference(
        self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest
    ) -> SolveResult:
        """What the wrapper does at inference, with the same records as `Solver.solve`."""
