"""How gradients flow through a descent when a loss on its result trains the energy: one named setting.

    last        only the last step keeps its graph (IREM: the loss sees how the final step moved)
    truncated   the last k steps keep their graph ("truncated:3")
    unroll      every step keeps its graph (exact gradient of the final iterate, memory grows with steps)
    per_step    every step (or the last k: "per_step:2") keeps its graph, each differentiated through
                its own gradient only, its start detached (EBT: each step learns to improve on
                wherever the previous one left it)
    implicit    no step keeps its graph; the final iterate y* is differentiated by the implicit function
                theorem: at a stationary point dE/dy(y*, theta) = 0, so dy*/dtheta = -H^-1 d(dE/dy)/dtheta
                with H the Hessian in y, solved by conjugate gradient on Hessian-vector products; memory
                does not grow with the number of steps (theseus' implicit mode)

`backward_mode` resolves a name ("last", "truncated:3", ...) or takes a mode object, refusing an
unknown name with the valid ones. Inference solves keep no graph whatever the mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import AnswerConstraint, per_instance_sum, per_row
from irem.solvers.transform import finite, require


@dataclass(frozen=True)
class BackwardMode:
    """Which steps keep their graph: the last `steps` (None: all of them), each detached from the
    step before it when `detach_steps`; `implicit` keeps none and differentiates the final iterate."""

    name: str
    steps: int | None = 1
    detach_steps: bool = False
    implicit: bool = False

    def graph_at(self, t: int, budget: int) -> bool:
        """Whether the gradient computed after step t (0: at the start) keeps its graph, so that the
        step after it is differentiated."""
        if self.implicit:
            return False
        return self.steps is None or t >= budget - self.steps

    def __str__(self) -> str:
        counted = self.name in ("truncated", "per_step") and self.steps is not None
        return f"{self.name}:{self.steps}" if counted else self.name


@dataclass(frozen=True)
class Implicit(BackwardMode):
    """The implicit function theorem at the final iterate. `cg_steps` and `tol`: the conjugate gradient
    solve of H u = v (per instance, relative residual `tol`); `damping` adds damping * I to H, which
    keeps the solve stable where the energy is not convex at y*."""

    name: str = "implicit"
    steps: int | None = None
    implicit: bool = True
    cg_steps: int = 50
    tol: float = 1e-6
    damping: float = 0.0

    def __post_init__(self) -> None:
        require(
            isinstance(self.cg_steps, int) and self.cg_steps >= 1,
            "Implicit",
            "cg_steps",
            "a whole number >= 1",
            self.cg_steps,
        )
        require(finite(self.tol) and self.tol > 0, "Implicit", "tol", "a finite number > 0", self.tol)
        require(finite(self.damping) and self.damping >= 0, "Implicit", "damping", "a finite number >= 0", self.damping)


NAMES = ("last", "truncated:<k>", "unroll", "per_step", "per_step:<k>", "implicit")


def backward_mode(spec: str | BackwardMode) -> BackwardMode:
    """A mode from its name (NAMES) or as given."""
    if isinstance(spec, BackwardMode):
        return spec
    name, _, k = str(spec).partition(":")
    steps: int | None = None
    if k:
        require(k.isdigit() and int(k) >= 1, "backward", f"the step count of '{spec}'", "a whole number >= 1", k)
        steps = int(k)
    if name == "last" and not k:
        return BackwardMode("last", 1)
    if name == "truncated" and steps is not None:
        return BackwardMode("truncated", steps)
    if name == "unroll" and not k:
        return BackwardMode("unroll", None)
    if name == "per_step":
        return BackwardMode("per_step", steps, detach_steps=True)
    if name == "implicit" and not k:
        return Implicit()
    raise ValueError(f"Unknown backward mode '{spec}'. Valid choices: {', '.join(NAMES)} (e.g. backward=truncated:3).")


# -- the implicit function theorem -------------------------------------------------------------------


def _dot(a: Tensor, b: Tensor, segment: Tensor | None, n: int) -> Tensor:
    return per_instance_sum(a * b, segment, n)


def conjugate_gradient(hvp: Any, v: Tensor, segment: Tensor | None, n: int, steps: int, tol: float) -> Tensor:
    """u with H u = v for each instance's block of a block-diagonal, symmetric positive definite H
    given as `hvp(w) = H w`: conjugate gradient with per-instance step lengths, stopped when every
    instance's residual is below `tol` times its right-hand side."""
    u = torch.zeros_like(v)
    r = v.clone()
    p = r.clone()
    rs = _dot(r, r, segment, n)
    goal = (tol**2) * rs.clamp_min(1e-30)
    for _ in range(steps):
        hp = hvp(p)
        curvature = _dot(p, hp, segment, n)
        alpha = torch.where(curvature > 0, rs / curvature.clamp_min(1e-30), torch.zeros_like(rs))
        u = u + per_row(alpha, p, segment) * p
        r = r - per_row(alpha, p, segment) * hp
        rs_next = _dot(r, r, segment, n)
        if bool((rs_next <= goal).all()):
            break
        beta = torch.where(rs > 0, rs_next / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + per_row(beta, p, segment) * p
        rs = rs_next
    return u


def implicit_result(
    energy: EnergyFunction,
    x: Any,
    y_star: Tensor,
    step: int,
    constraint: AnswerConstraint | None,
    segment: Tensor | None,
    n: int,
    mode: Implicit,
) -> Tensor:
    """`y_star` as a tensor whose gradient is the implicit function theorem's: its value is y* exactly;
    a loss's gradient v reaching it is turned into u = (H + damping I)^-1 v (conjugate gradient on
    Hessian-vector products at y*), which then flows to the energy's parameters as -(d(dE/dy)/dtheta)^T u.
    Fixed entries (the problem's constraint) take no part: they do not move with theta."""
    y = y_star.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(energy.energy(x, y, step).sum(), y, create_graph=True)
        if constraint is not None:
            g = constraint.free_gradient(g)
        moved = y - g  # the same value as y* at a stationary point; its gradient flows through -g

    def hvp(w: Tensor) -> Tensor:
        (hw,) = torch.autograd.grad(g, y, grad_outputs=w, retain_graph=True)
        hw = hw + mode.damping * w if mode.damping else hw
        return hw if constraint is None else constraint.free_gradient(hw)

    def solve(v: Tensor) -> Tensor:
        v = v if constraint is None else constraint.free_gradient(v)
        with torch.enable_grad():
            return conjugate_gradient(hvp, v, segment, n, mode.cg_steps, mode.tol)

    if moved.requires_grad:
        moved.register_hook(solve)
    return y_star.detach() + (moved - moved.detach())
