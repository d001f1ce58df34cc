"""Per-coordinate scaling of the direction: Adam and RMSprop, run on the answer y."""

from __future__ import annotations

import torch
from torch import Tensor

from irem.problem import per_row
from irem.solvers.transform import StepContext, Transform, finite, require


class ScaleByAdam(Transform):
    """Adam's direction on y (Kingma and Ba): m / (sqrt(v) + eps) from running averages of the
    gradient and its square, bias-corrected per instance. Each entry then moves about step_size
    per step whatever its gradient's scale, and entries with a steady gradient move faster than
    noisy ones: a descent on a badly scaled energy needs no tuned step."""

    name = "adam"
    per_row = ("m", "v")

    def __init__(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        for key, value in (("b1", b1), ("b2", b2)):
            require(finite(value) and 0 <= value < 1, "ScaleByAdam", key, "in [0, 1)", value)
        require(finite(eps) and eps >= 0, "ScaleByAdam", "eps", "a finite number >= 0", eps)
        self.b1, self.b2, self.eps = float(b1), float(b2), float(eps)

    def init(self, y: Tensor, n: int) -> dict[str, Tensor]:
        zeros = torch.zeros_like(y.detach())
        return {"m": zeros, "v": zeros.clone(), "count": torch.zeros(n, device=y.device, dtype=y.dtype)}

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        state["m"] = self.b1 * state["m"] + (1 - self.b1) * d
        state["v"] = self.b2 * state["v"] + (1 - self.b2) * d * d
        state["count"] = state["count"] + 1
        c = per_row(state["count"], d, ctx.segment)
        m_hat = state["m"] / (1 - self.b1**c)
        v_hat = state["v"] / (1 - self.b2**c)
        return m_hat / (v_hat.sqrt() + self.eps)


class ScaleByRMS(Transform):
    """RMSprop's direction on y: d / (sqrt(v) + eps), v a running average of d^2 with `decay`."""

    name = "rmsprop"
    per_row = ("v",)

    def __init__(self, decay: float = 0.9, eps: float = 1e-8) -> None:
        require(finite(decay) and 0 <= decay < 1, "ScaleByRMS", "decay", "in [0, 1)", decay)
        require(finite(eps) and eps >= 0, "ScaleByRMS", "eps", "a finite number >= 0", eps)
        self.decay, self.eps = float(decay), float(eps)

    def init(self, y: Tensor, n: int) -> dict[str, Tensor]:
        return {"v": torch.zeros_like(y.detach())}

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        state["v"] = self.decay * state["v"] + (1 - self.decay) * d * d
        return d / (state["v"].sqrt() + self.eps)
