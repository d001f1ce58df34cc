"""Mirror descent on the simplex (exponentiated gradient), for categorical answers."""

from __future__ import annotations

import torch
from torch import Tensor

from irem.solvers.transform import StepContext, Transform, finite, require

FORMS = ("logits", "probabilities")


class ExponentiatedGradient(Transform):
    """Exponentiated gradient on the probability simplex of each position's classes (the last
    dimension of the answer): p <- p * exp(-step * dE/dp), renormalised. Where a categorical answer
    is a distribution the Euclidean step is the wrong geometry: it pushes small probabilities below
    zero and barely moves large ones, while this multiplicative step moves every class by its share.

    `over="probabilities"`: the answer is p itself (rows on the simplex, kept there by this step).
    `over="logits"`: the answer is scores y with p = softmax(y); then the same step is, up to a
    constant per row, y <- y - step * dE/dp, and since dE/dy_i = p_i (dE/dp_i - c) the direction is
    dE/dy_i / p_i. `floor` keeps a class whose probability underflowed from dividing by zero."""

    name = "exponentiated_gradient"
    categorical = True

    def __init__(self, over: str = "logits", floor: float = 1e-12) -> None:
        if over not in FORMS:
            raise ValueError(f"ExponentiatedGradient: unknown over '{over}'. Valid choices: {', '.join(FORMS)}.")
        require(finite(floor) and floor > 0, "ExponentiatedGradient", "floor", "a finite number > 0", floor)
        self.over, self.floor = over, float(floor)

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        if self.over != "logits":
            return d
        return d / torch.softmax(ctx.y.detach(), dim=-1).clamp_min(self.floor)

    def apply(self, y: Tensor, update: Tensor, ctx: StepContext) -> Tensor | None:
        if self.over != "probabilities":
            return None
        moved = y * torch.exp(-update)
        return moved / moved.sum(dim=-1, keepdim=True).clamp_min(self.floor)
