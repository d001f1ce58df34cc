"""The `Solver` interface: how to descend an energy."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.errors import SettingError, unknown_key_message
from irem.problem import AnswerConstraint, SolveResult

# Fresh starts for instances `index` of the problem being solved, in the answer's layout (the rows of
# those instances, in that order): the task's own `init_answer`, so a solver that restarts draws
# where the task starts (irem/energy_model.py builds it).
StartSampler = Callable[[Tensor], Tensor]

# Whether the answers `y` (their rows, in the layout of the problem's instances `index`) solve
# instances `index`: the task's own `check`, for solvers that stop or restart on a verified answer.
Verifier = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class SolveRequest:
    """What a caller asks of one solve besides the energy, the input, the start and the budget.

    `segment` maps answer rows to instances; `constraint` is the problem's answer constraint (fixed
    entries, a projection), honoured at every step; `differentiable` keeps the graph of the steps
    the solver's truncation allows, so a loss on the result trains the energy; `record_history` and
    `record_trajectory` keep every step's energies and iterates; `snapshots` asks for the iterate
    after each listed number of steps, so one run reports several budgets; `generator` draws noise;
    `init` draws fresh starts, for solvers that start more than once (best-of-N); `verify` tells
    whether answers solve their instances (the task's check), for solvers that stop or restart on
    a verified answer; a result that used it is labelled so by its solver's settings.
    """

    segment: Tensor | None = None
    constraint: AnswerConstraint | None = None
    differentiable: bool = False
    record_history: bool = False
    record_trajectory: bool = False
    snapshots: tuple[int, ...] = ()
    generator: torch.Generator | None = None
    init: StartSampler | None = None
    verify: Verifier | None = None


class Solver(nn.Module, abc.ABC):
    """Descends `energy` in y from `y0`. A module so a learnable step size trains with the energy."""

    max_steps: int
    # True for solvers that decide per instance how many steps to take (solvers/adaptive.py):
    # studies run them once at their own max_steps instead of at every budget
    adaptive: bool = False

    def solve(
        self,
        energy: EnergyFunction,
        x: Any,
        y0: Tensor,
        budget: int | None = None,
        *,
        segment: Tensor | None = None,
        constraint: AnswerConstraint | None = None,
        differentiable: bool = False,
        record_history: bool = False,
        record_trajectory: bool = False,
        snapshots: Iterable[int] = (),
        generator: torch.Generator | None = None,
        init: StartSampler | None = None,
        verify: Verifier | None = None,
    ) -> SolveResult:
        """Run at most `budget` steps (default `max_steps`) from `y0`; the keywords are `SolveRequest`'s."""
        request = SolveRequest(
            segment=segment,
            constraint=constraint,
            differentiable=differentiable,
            record_history=record_history,
            record_trajectory=record_trajectory,
            snapshots=tuple(int(s) for s in snapshots),
            generator=generator,
            init=init,
            verify=verify,
        )
        return self.for_energy(energy).run(energy, x, y0, budget, request)

    @abc.abstractmethod
    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        """What `solve` does: the one method a solver implements (wrappers call it on what they wrap)."""

    @property
    def step_size(self) -> Tensor | None:
        """The step size, where the solver has one (a wrapper reports the one it wraps)."""
        return None

    @property
    def snapshots_match_budgets(self) -> bool:
        """Whether the snapshot after b steps equals what a b-step solve returns, so one solve can
        report every budget."""
        return True

    def scaled_step(self, factor: float) -> AbstractContextManager[None]:
        """A context in which the step size is `factor` times what it is (best-of-N's restarts)."""
        raise TypeError(f"{type(self).__name__} has no step size to scale; give best_of_n restarts=0.")

    def for_energy(self, energy: EnergyFunction) -> Solver:
        """This solver, set up to descend `energy`: a setting the energy owns (the annealed solver's
        landscape count) is read from it here, once, and an energy the solver cannot descend is
        refused with the fix, before any work. The model calls it whenever it takes a solver."""
        return self

    def settings(self) -> dict[str, Any]:
        """The constructor's settings as this solver holds them (each kept under its own name)."""
        params = inspect.signature(type(self).__init__).parameters.values()
        names = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    def with_settings(self, changes: dict[str, Any]) -> Solver:
        """This solver with `changes` to its settings (irem-eval's +solver_settings.*), built anew
        through its constructor, so a changed value passes the checks a config's does; its parameters
        and buffers (a learned step size) carry over."""
        current = self.settings()
        for key in changes:
            if key not in current:
                message = unknown_key_message(f"solver_settings.{key}", key, list(current))
                raise SettingError(f"{message} (for {type(self).__name__})")
        try:
            changed = type(self)(**{**current, **changes})
        except (ValueError, TypeError) as err:
            raise SettingError(f"solver_settings {changes} refused by {type(self).__name__}: {err}") from None
        changed.load_state_dict(self.state_dict())
        return changed

    def describe(self) -> str:
        """One line naming the solver and its settings."""
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings().items())
        return f"{type(self).__name__}({shown})"

    def with_base(self, base: Solver) -> Solver:
        """This solver, for a model trained with `base`. A solver that wraps another one and was
        configured without it (solvers/adaptive.py) wraps `base`, keeping the trained step size."""
        return self
