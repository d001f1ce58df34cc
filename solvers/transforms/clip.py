"""Gradient clipping: each instance's descent direction capped at a norm."""

from __future__ import annotations

from torch import Tensor

from irem.problem import per_instance_sum, per_row
from irem.solvers.transform import StepContext, Transform, finite, require


class Clip(Transform):
    """d * min(1, max_norm / ||d||), the norm taken over each instance's whole answer: a step can
    never be longer than step_size * max_norm, however steep the energy is where a descent starts."""

    name = "clip"

    def __init__(self, max_norm: float) -> None:
        require(finite(max_norm) and max_norm > 0, "Clip", "max_norm", "a finite number > 0", max_norm)
        self.max_norm = float(max_norm)

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        norm = per_instance_sum(d.detach() ** 2, ctx.segment, ctx.n).sqrt()
        scale = (self.max_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
        return d * per_row(scale, d, ctx.segment)
