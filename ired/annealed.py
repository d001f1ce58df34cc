"""Annealed descent over IRED's landscapes (solver=annealed): smoothest first, sharpest last.

IRED (Du et al. 2024) solves by descending a family of energy landscapes (ired/landscapes.py),
from the smoothest (K-1), where one basin holds every plausible answer, to the sharpest (0),
where the answer settles. On each landscape it takes a denoising jump (the energy's gradient
read as the noise, IRED's p_sample) and then steps kept per instance only if they lower that
landscape's energy; iterates are clamped to the landscape's range and fixed entries re-applied
after every step. Here every one of those steps is the shared descent step (solvers/step.py) on
a `LandscapeView`, in answer units, so the problem's constraint, accept-if-lower and the
divergence bookkeeping are exactly the other solvers'.

A budget counts gradient steps summed over landscapes (the jump included), spread evenly by
`spread_budget`; a 10-step solve is therefore not the first 10 steps of a 60-step one, and each
evaluation budget is solved on its own (`snapshots_match_budgets` is False). `grad_tol` lets an
instance stop early on the last landscape. Deviations from the reference code: the start is the
task's own (the reference draws N(0, 1) in the scaled variable, which the first clamp turns into
+-clamp), and the answer returned is in answer units (the reference returns sqrt(abar_0) times it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.errors import SettingError
from irem.ired.landscapes import (
    DEFAULT_CLAMP,
    DEFAULT_LANDSCAPES,
    LandscapeSchedule,
    LandscapeView,
    landscapes_of,
    spread_budget,
)
from irem.problem import AnswerConstraint
from irem.solver import SolveRequest
from irem.solvers.descent import PhasedSolver, Plan
from irem.solvers.loop import Phase
from irem.solvers.step import DescentStep
from irem.solvers.transform import finite, require
from irem.solvers.transforms.accept import AcceptIfLower


def clamped(constraint: AnswerConstraint | None, bound: float | None) -> AnswerConstraint | None:
    """`constraint` with every answer entry clamped to [-bound, bound] first (fixed entries are
    set after, so they stay exact)."""
    if bound is None:
        return constraint
    base = constraint or AnswerConstraint()
    inner = base.project

    def project(y: Tensor) -> Tensor:
        y = y.clamp(-bound, bound)
        return y if inner is None else inner(y)

    return replace(base, project=project)


def landscape_step(size: Tensor, accept_if_lower: bool, grad_tol: float | None = None) -> DescentStep:
    """A step of `size` on one landscape, as IRED takes it: no schedule within the landscape, and a
    rejected step not shrunk (the solver and objective=ired's negatives both step this way)."""
    chain = [AcceptIfLower(shrink=1.0)] if accept_if_lower else []
    return DescentStep(size.log(), chain, grad_tol=grad_tol)


class AnnealedDescent(PhasedSolver):
    """Descend landscapes K-1 .. 0 of a landscape-conditioned energy, `steps_per_landscape` each.

    `landscapes`: K, null (the default) for the energy's own count, read once when the solver is
    given its energy (`for_energy`), so the count is set in one place (energy.landscapes); a number
    that differs from the energy's is refused there, before any work.

    `jump`: each landscape's first step is IRED's denoising jump (always accepted); the rest are
    steps of IRED's schedule step times `step_scale`, kept only where they lower that landscape's
    energy (`accept_if_lower`; a rejected step is not shrunk, as in the reference). `clamp`:
    the range answers are kept in (null: none). `grad_tol`: an instance whose gradient norm falls
    below it on the last landscape stops there (converged).
    """

    landscape_solver = True  # descends a family of landscapes: an energy with landscapes needs one

    def __init__(
        self,
        landscapes: int | None = None,
        steps_per_landscape: int = 6,
        step_scale: float = 1.0,
        jump: bool = True,
        accept_if_lower: bool = True,
        clamp: float | None = DEFAULT_CLAMP,
        grad_tol: float | None = None,
    ) -> None:
        super().__init__()
        if landscapes is not None:
            LandscapeSchedule(landscapes)  # refuses a bad count
        owner = "AnnealedDescent"
        require(
            not isinstance(steps_per_landscape, bool)
            and isinstance(steps_per_landscape, int)
            and steps_per_landscape >= 1,
            owner,
            "steps_per_landscape",
            "a whole number >= 1",
            steps_per_landscape,
        )
        require(finite(step_scale) and step_scale > 0, owner, "step_scale", "a finite number > 0", step_scale)
        require(
            clamp is None or (finite(clamp) and clamp > 0), owner, "clamp", "null (no clamp) or a number > 0", clamp
        )
        require(
            grad_tol is None or (finite(grad_tol) and grad_tol >= 0),
            owner,
            "grad_tol",
            "null or a number >= 0",
            grad_tol,
        )
        self.given_landscapes = None if landscapes is None else int(landscapes)  # None: the energy's
        self.landscapes = self.given_landscapes  # the count of the energy last given (`for_energy`)
        self.steps_per_landscape = int(steps_per_landscape)
        self.step_scale = float(step_scale)
        self.jump = bool(jump)
        self.accept_if_lower = bool(accept_if_lower)
        self.clamp = None if clamp is None else float(clamp)
        self.grad_tol = grad_tol
        self._factor = 1.0  # best-of-N restarts scale every step (`scaled_step`)

    @staticmethod
    def upgrade_config(node: dict, root: dict) -> dict:
        """A saved solver that repeated its energy's landscape count reads it from the energy now."""
        if node.get("landscapes") is not None and node.get("landscapes") == (root.get("energy") or {}).get(
            "landscapes"
        ):
            return {**node, "landscapes": None}
        return node

    @property
    def schedule(self) -> LandscapeSchedule:
        return LandscapeSchedule(self._count())

    @property
    def max_steps(self) -> int:  # type: ignore[override]
        return self._count() * self.steps_per_landscape

    def _count(self) -> int:
        if self.landscapes is None:
            raise ValueError(
                "AnnealedDescent: the landscape count is the energy's, and no energy was given yet: a model sets it "
                "(for_energy), or give landscapes=K to a solver used on its own."
            )
        return self.landscapes

    @property
    def snapshots_match_budgets(self) -> bool:
        return False  # a budget is spread over the landscapes: b steps of a longer solve are another path

    @contextmanager
    def scaled_step(self, factor: float) -> Iterator[None]:
        saved = self._factor
        self._factor = saved * float(factor)
        try:
            yield
        finally:
            self._factor = saved

    def _step(self, size: Tensor, accept: bool, grad_tol: float | None = None) -> DescentStep:
        return landscape_step(torch.as_tensor(float(size) * self._factor), accept, grad_tol)

    def for_energy(self, energy: EnergyFunction) -> AnnealedDescent:
        """Take the energy's landscape count (unless one was given); refuse an energy without
        landscapes, or with another count than the one given."""
        have = landscapes_of(energy)
        if have == 0:
            raise SettingError(
                "solver=annealed descends a family of landscapes, but the energy has none (energy.landscapes=0; its "
                f"step argument is not a landscape index): build it with energy.landscapes={DEFAULT_LANDSCAPES} and "
                "train it with objective=ired, or use solver=gd."
            )
        if self.given_landscapes is not None and self.given_landscapes != have:
            raise SettingError(
                f"solver.landscapes={self.given_landscapes}, but the energy has {have} landscapes "
                f"(energy.landscapes={have}): "
                "leave solver.landscapes unset (null), and the solver descends the energy's."
            )
        self.landscapes = have
        return self

    def plan(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> Plan:
        """One phase per landscape with a share of the budget (the sharpest always), smoothest first:
        its view of the energy, IRED's jump as its first step, then its accept-if-lower steps; every
        answer clamped (and the problem's fixed entries re-applied) after each step."""
        if request.differentiable:
            raise ValueError(
                "solver=annealed is an inference solver: no loss is differentiated through it. Train its energy "
                "with objective=ired, which descends each landscape itself."
            )
        self.for_energy(energy)
        T = self.max_steps if budget is None else int(budget)
        schedule = self.schedule
        phases = []
        for k, share in reversed(list(enumerate(spread_budget(max(T, 0), self._count())))):
            last = k == 0
            if share == 0 and not last:
                continue
            opt = self._step(
                schedule.answer_step(k, self.step_scale), self.accept_if_lower, self.grad_tol if last else None
            )
            jump = self._step(schedule.jump_step(k), False) if self.jump else None
            phases.append(
                Phase(LandscapeView(energy, schedule, k, request.segment), opt, share, first=jump, landscape=k)
            )
        constrained = replace(request, constraint=clamped(request.constraint, self.clamp))
        return Plan(phases, T, constrained, report_step_size=False, owner=type(self).__name__)
