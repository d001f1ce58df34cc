"""Heavy-ball and Nesterov momentum, with an optional gradient restart."""

from __future__ import annotations

import torch
from torch import Tensor

from irem.problem import per_instance_sum, per_row
from irem.solvers.transform import StepContext, Transform, finite, require


class Momentum(Transform):
    """Adds `coef` times each instance's last move to its step (heavy ball, Polyak):
    y_{t+1} = y_t - step * d_t + coef * (y_t - y_{t-1}). On a landscape whose curvature differs a lot
    between directions plain descent needs a number of steps that grows with the curvature ratio,
    heavy ball about its square root. `nesterov` looks ahead (Sutskever's form, in the shifted
    iterate, as torch's SGD takes it): the velocity is v' = coef * v - step * d and the move
    coef * v' - step * d (the first move is (1 + coef) steps). A rejected move
    (accept-if-lower) zeroes that instance's velocity. `restart` (O'Donoghue and Candes 2015) also
    zeroes it when the new gradient points along the last move (g . v > 0): the momentum is carrying
    the iterate uphill, which is what makes heavy ball overshoot and oscillate.

    The step this transform sees is the move made so far (place it before noise in a chain)."""

    name = "momentum"
    per_row = ("velocity", "next")

    def __init__(self, coef: float = 0.9, nesterov: bool = False, restart: bool = False) -> None:
        require(finite(coef) and 0 <= coef < 1, "Momentum", "coef", "in [0, 1)", coef)
        self.coef, self.nesterov, self.restart = float(coef), bool(nesterov), bool(restart)

    def init(self, y: Tensor, n: int) -> dict[str, Tensor]:
        zeros = torch.zeros_like(y.detach())
        return {"velocity": zeros, "next": zeros}

    def move(self, proposal: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        if not self.nesterov:
            return proposal + self.coef * state["velocity"]
        state["next"] = self.coef * state["velocity"] + (proposal - ctx.y)  # v' = coef * v - step * d
        return proposal + self.coef * state["next"]

    def after(self, state: dict[str, Tensor], taken: Tensor, accept: Tensor, g: Tensor, ctx: StepContext) -> None:
        velocity = taken  # heavy ball: the move each instance made (zero where rejected)
        if self.nesterov:
            velocity = torch.where(per_row(accept, taken, ctx.segment), state["next"], torch.zeros_like(taken))
        if self.restart:
            uphill = per_instance_sum(g.detach() * velocity.detach(), ctx.segment, ctx.n) > 0
            velocity = torch.where(per_row(uphill, velocity, ctx.segment), torch.zeros_like(velocity), velocity)
        state["velocity"] = velocity
