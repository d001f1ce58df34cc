"""Annealed descent over IRED's landscapes (solver=annealed): smoothest first, sharpest last.

IRED (Du et al. 2024) solves by descending a family of energy landscapes (irem/landscapes.py),
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

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from irem.config import SettingError
from irem.energy import EnergyFunction
from irem.landscapes import (
    DEFAULT_CLAMP,
    DEFAULT_LANDSCAPES,
    LandscapeSchedule,
    LandscapeView,
    landscapes_of,
    spread_budget,
)
from irem.problem import AnswerConstraint, SolveResult, Status
from irem.solver import Solver, SolveRequest
from irem.solvers.step import DescentStep


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
    return DescentStep(
        log_step_size=size.log(),
        multiplier=lambda t, budget: 1.0,  # noqa: ARG005
        accept_if_lower=accept_if_lower,
        shrink=1.0,
        grad_tol=grad_tol,
    )


class AnnealedDescent(Solver):
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
        if isinstance(steps_per_landscape, bool) or not isinstance(steps_per_landscape, int) or steps_per_landscape < 1:
            raise ValueError(
                f"AnnealedDescent: steps_per_landscape must be a whole number >= 1, got {steps_per_landscape!r}."
            )
        if not (math.isfinite(step_scale) and step_scale > 0):
            raise ValueError(f"AnnealedDescent: step_scale must be a finite number > 0, got {step_scale}.")
        if clamp is not None and not (math.isfinite(clamp) and clamp > 0):
            raise ValueError(f"AnnealedDescent: clamp must be null (no clamp) or a number > 0, got {clamp}.")
        if grad_tol is not None and not (math.isfinite(grad_tol) and grad_tol >= 0):
            raise ValueError(f"AnnealedDescent: grad_tol must be null or a number >= 0, got {grad_tol}.")
        self.given_landscapes = None if landscapes is None else int(landscapes)  # None: the energy's
        self.landscapes = self.given_landscapes  # the count of the energy last given (`for_energy`)
        self.steps_per_landscape = int(steps_per_landscape)
        self.step_scale = float(step_scale)
        self.jump = bool(jump)
        self.accept_if_lower = bool(accept_if_lower)
        self.clamp = None if clamp is None else float(clamp)
        self.grad_tol = grad_tol
        self._factor = 1.0  # best-of-N restarts scale every step (`scaled_step`)

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

    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        if request.differentiable:
            raise ValueError(
                "solver=annealed is an inference solver: no loss is differentiated through it. Train its energy "
                "with objective=ired, which descends each landscape itself."
            )
        self.for_energy(energy)
        T = self.max_steps if budget is None else int(budget)
        if T < 0:
            raise ValueError(f"AnnealedDescent: budget must be >= 0, got {T}.")
        wanted = set(request.snapshots)
        if any(s < 0 or s > T for s in wanted):
            raise ValueError(f"AnnealedDescent: snapshots {sorted(wanted)} must lie in [0, budget={T}].")
        shares = spread_budget(T, self.landscapes)
        schedule = self.schedule
        constraint = clamped(request.constraint, self.clamp)
        landscape_request = replace(request, constraint=constraint)
        segment = request.segment
        with torch.no_grad():
            x = energy.prepare(x)
        y = y0.detach()
        steps = status = None
        done = 0  # steps taken so far, for the snapshots on the path
        taken: dict[int, Tensor] = {}
        history: list[Tensor] | None = [] if request.record_history else None
        trajectory: list[Tensor] | None = [] if request.record_trajectory else None
        landscape_of: Tensor | None = None
        for k in reversed(range(self.landscapes)):
            share, last = shares[k], k == 0
            if share == 0 and not last:
                continue
            view = LandscapeView(energy, schedule, k, segment)
            opt = self._step(
                schedule.answer_step(k, self.step_scale), self.accept_if_lower, self.grad_tol if last else None
            )
            jump = self._step(schedule.jump_step(k), False)
            s = opt.start(view, x, y, landscape_request, need_grad=share > 0, create_graph=False)
            if status is None:
                steps = torch.zeros(s.n, dtype=torch.long, device=s.e.device)
                status = torch.full((s.n,), int(Status.MAX_STEPS), dtype=torch.long, device=s.e.device)
                landscape_of = torch.full((s.n,), k, dtype=torch.long, device=s.e.device)
                if 0 in wanted:
                    taken[0] = s.y.detach()
            earlier = status == int(Status.DIVERGED)
            s.stop(earlier, Status.DIVERGED)  # an instance that diverged on a smoother landscape stays put
            if history is not None:
                history.append(s.e.detach())
            for i in range(1, share + 1):
                if not s.any_active():
                    break
                step = jump if (self.jump and i == 1) else opt
                step.step(s, view, x, i, share, request.generator, need_grad=not (last and i == share))
                done += 1
                if history is not None:
                    history.append(s.e.detach())
                if trajectory is not None:
                    trajectory.append(s.y.detach())
                if done in wanted:
                    taken[done] = s.y.detach()
            steps = steps + s.steps
            landscape_of = torch.where(earlier, landscape_of, torch.full_like(landscape_of, k))
            diverged = s.status == int(Status.DIVERGED)
            status = s.status.clone() if last else torch.where(diverged, s.status, status)
            y = s.y.detach()
        for b in wanted:
            taken.setdefault(b, y)
        e = torch.where(status == int(Status.DIVERGED), torch.full_like(s.e, math.nan), s.e.detach())
        used = sum(1 for k, v in enumerate(shares) if v > 0 or k == 0)  # landscapes whose start was evaluated
        return SolveResult(
            y=y,
            steps=steps,
            status=status,
            energy=e,
            best_y=s.handed_out_best_y(),
            best_energy=s.reported_best_energy(),
            best_step=s.best_step,
            energy_history=torch.stack(history) if history is not None else None,
            trajectory=trajectory,
            snapshots=taken,
            evaluations=steps + used,
            landscape=landscape_of,
        )
