"""Langevin noise on every step, with a schedule of its own."""

from __future__ import annotations

import torch
from torch import Tensor

from irem.schedules import Schedule
from irem.solvers.transform import StepContext, Transform, finite, require


class Noise(Transform):
    """Adds scale * N(0, 1) to every entry of each proposal (Langevin dynamics), for sampling or
    escaping poor minima. Its own `schedule` (irem/schedules.py) cools it over the budget, from
    `scale` at the first step to final_fraction * scale at the last, independently of the step's."""

    name = "noise"

    def __init__(self, scale: float = 0.005, schedule: str = "constant", final_fraction: float = 0.1) -> None:
        require(finite(scale) and scale >= 0, "Noise", "scale", "a finite number >= 0", scale)
        self.curve = Schedule(schedule, final_fraction)
        self.scale, self.schedule, self.final_fraction = float(scale), schedule, float(final_fraction)

    @property
    def budget_dependent(self) -> bool:
        return self.scale > 0 and not self.curve.constant

    def move(self, proposal: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        if self.scale == 0:
            return proposal
        device = ctx.generator.device if ctx.generator is not None else proposal.device  # the trainer's is on the CPU
        noise = torch.randn(proposal.shape, generator=ctx.generator, device=device, dtype=proposal.dtype)
        sigma = self.scale if self.curve.constant else self.scale * self.curve.at_step(ctx.t, ctx.budget)
        return proposal + sigma * noise.to(proposal.device)
