"""Schedules: how a quantity falls from its full value to a final fraction of it as work progresses.

One place for the curves, whoever schedules: a descent's step size and its Langevin noise (over
the steps of a budget, solvers/transforms/), the trainer's learning rate (over its iterations or
its wall-clock), and IRED's noise levels (over its landscapes, irem.ired.landscapes). A schedule
is a value: `Schedule(kind, final_fraction)` validated once, `at(p)` its factor at progress p in
[0, 1]: 1 at p = 0, `final_fraction` at p = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("constant", "linear", "cosine", "exponential")


@dataclass(frozen=True)
class Schedule:
    """`kind` one of KINDS; `final_fraction` the factor reached at the end, in (0, 1] (0 is allowed for
    the linear and cosine curves, which reach it; the exponential one never would)."""

    kind: str = "constant"
    final_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown schedule '{self.kind}'. Valid choices: {', '.join(KINDS)}.")
        low_ok = self.final_fraction > 0 or (self.final_fraction == 0 and self.kind in ("linear", "cosine"))
        if not (math.isfinite(self.final_fraction) and low_ok and self.final_fraction <= 1):
            raise ValueError(
                f"Schedule: final_fraction (the factor at the end) must be in (0, 1] ([0, 1] for linear and cosine), "
                f"got {self.final_fraction}."
            )

    @property
    def constant(self) -> bool:
        return self.kind == "constant"

    def at(self, p: float) -> float:
        """The factor at progress `p` (clipped to [0, 1])."""
        if self.kind == "constant":
            return 1.0
        p = min(max(p, 0.0), 1.0)
        f = self.final_fraction
        if self.kind == "linear":
            return 1.0 + (f - 1.0) * p
        if self.kind == "cosine":
            return f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * p))
        return f**p  # exponential: a constant ratio between consecutive steps

    def at_step(self, t: int, budget: int) -> float:
        """The factor of step t (numbered from 1) of a budget: progress (t - 1) / (budget - 1), so the
        first step is always a full one and the last one is `final_fraction` of it; a budget of one
        step takes the full step."""
        if self.kind == "constant":
            return 1.0
        if t < 1:
            raise ValueError(f"Schedule: steps are numbered from 1, got t={t}.")
        return self.at(0.0 if budget <= 1 else min((t - 1) / (budget - 1), 1.0))


def warmup_then(schedule: Schedule, step: int, total: int, warmup: int = 0, time_fraction: float = 0.0) -> float:
    """The trainer's learning-rate factor for the step that makes iteration `step` + 1: a linear
    warm-up from 1/warmup to 1 over `warmup` iterations, then `schedule`, whose progress is the
    larger of the iteration fraction and `time_fraction` (spent / time_limit), so a run stopped by
    its wall-clock limit also ends on small steps."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule.constant:
        return 1.0
    span = max(total - warmup, 1)
    return schedule.at(max((step - warmup) / span, time_fraction))


def cosine_betas(levels: int, offset: float = 0.008) -> Tensor:
    """The cosine noise schedule of Nichol and Dhariwal (2021) over `levels` levels, as IRED uses
    it: the betas (clipped at 0.999), in float64. abar_k = prod_{j<=k} (1 - beta_j)."""
    x = torch.linspace(0, levels, levels + 1, dtype=torch.float64)
    f = torch.cos(((x / levels) + offset) / (1 + offset) * math.pi * 0.5) ** 2
    f = f / f[0]
    return (1 - f[1:] / f[:-1]).clip(0, 0.999)
