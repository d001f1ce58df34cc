"""A schedule on the step size over the steps of a budget (annealing the landscape walk)."""

from __future__ import annotations

from torch import Tensor

from irem.schedules import KINDS, Schedule
from irem.solvers.transform import StepContext, Transform


class StepSchedule(Transform):
    """The step of step t of a budget T times a factor that falls from 1 at t = 1 to `final_fraction`
    at t = T (irem/schedules.py: linear, cosine, exponential): long strides early to cross between
    basins, small ones late to settle into one. The schedule stretches over whatever budget a solve
    gets, so with it the iterate after b steps of a longer solve is not the answer of a b-step solve."""

    name = "schedule"
    KINDS = KINDS

    def __init__(self, kind: str = "cosine", final_fraction: float = 0.1) -> None:
        self.curve = Schedule(kind, final_fraction)  # refuses an unknown kind or a fraction out of range
        self.kind, self.final_fraction = kind, float(final_fraction)

    @property
    def budget_dependent(self) -> bool:
        return not self.curve.constant

    def scale(self, step: Tensor, ctx: StepContext) -> Tensor:
        return step * self.curve.at_step(ctx.t, ctx.budget) if not self.curve.constant else step
