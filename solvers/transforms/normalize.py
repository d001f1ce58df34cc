"""A normalised direction: the step moves each instance the same distance, whatever the energy's scale."""

from __future__ import annotations

from torch import Tensor

from irem.problem import per_instance_mean, per_row
from irem.solvers.transform import StepContext, Transform, finite, require


class Normalize(Transform):
    """d / rms(d), the root mean square taken over each instance's entries: every free entry then
    moves about step_size per step, so one step size suits an energy whose gradients are 1e-3 and
    one whose gradients are 1e3 (a new task's energy, before anyone knows its scale), and answers
    of any size. `eps` keeps a flat instance (d = 0) where it is."""

    name = "normalize"

    def __init__(self, eps: float = 1e-12) -> None:
        require(finite(eps) and eps > 0, "Normalize", "eps", "a finite number > 0", eps)
        self.eps = float(eps)

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        rms = per_instance_mean(d.detach() ** 2, ctx.segment, ctx.n).sqrt()
        return d / per_row(rms.clamp_min(self.eps), d, ctx.segment)
