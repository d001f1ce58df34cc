"""Gradient descent on E(x, y) in y, with per-instance bookkeeping.

One solver covers IREM's fixed-step descent and its variants: a learnable step size, Langevin
noise, accept-only-if-lower (with per-instance step shrinking on rejection), per-instance
gradient clipping, a gradient-norm tolerance, and truncated backprop through the last k steps.
An instance whose energy or gradient is not finite is frozen at its last finite iterate and
marked diverged; the rest of the batch carries on untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction, describe
from irem.problem import SolveResult, Status, per_instance_sum, per_row
from irem.solver import Solver


class GradientDescent(Solver):
    """y <- y - step_size * dE/dy (+ noise), for at most `max_steps` steps.

    `truncate` is how many of the last steps keep their graph when `differentiable` is asked
    for (IREM: 1); 0 unrolls every step.
    """

    def __init__(
        self,
        step_size: float = 100.0,
        max_steps: int = 10,
        learnable_step: bool = False,
        noise: float = 0.0,
        accept_if_lower: bool = False,
        shrink: float = 0.5,
        grad_clip: float | None = None,
        grad_tol: float | None = None,
        truncate: int = 1,
    ) -> None:
        super().__init__()
        if step_size <= 0:
            raise ValueError(f"GradientDescent: step_size must be positive, got {step_size}.")
        if max_steps < 0:
            raise ValueError(f"GradientDescent: max_steps must be >= 0, got {max_steps}.")
        if truncate < 0:
            raise ValueError(f"GradientDescent: truncate must be >= 0 (0 = full unroll), got {truncate}.")
        if not 0 < shrink <= 1:
            raise ValueError(f"GradientDescent: shrink must be in (0, 1], got {shrink}.")
        log_step = torch.tensor(math.log(step_size))
        if learnable_step:
            self.log_step_size = nn.Parameter(log_step)
        else:
            self.register_buffer("log_step_size", log_step)
        self.max_steps = int(max_steps)
        self.noise = float(noise)
        self.accept_if_lower = bool(accept_if_lower)
        self.shrink = float(shrink)
        self.grad_clip = grad_clip
        self.grad_tol = grad_tol
        self.truncate = int(truncate)

    @property
    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    def _evaluate(
        self, energy: EnergyFunction, x: Any, y: Tensor, step: int, need_grad: bool, create_graph: bool
    ) -> tuple[Tensor, Tensor | None]:
        if not need_grad:
            with torch.no_grad():
                return energy.energy(x, y, step), None
        with torch.enable_grad():
            y_in = y if (create_graph and y.requires_grad) else y.detach().requires_grad_(True)
            e = energy.energy(x, y_in, step)
            (g,) = torch.autograd.grad(e.sum(), y_in, create_graph=create_graph)
        if not create_graph:
            e, g = e.detach(), g.detach()
        return e, g

    def solve(
        self,
        energy: EnergyFunction,
        x: Any,
        y0: Tensor,
        budget: int | None = None,
        *,
        segment: Tensor | None = None,
        differentiable: bool = False,
        record_history: bool = False,
        record_trajectory: bool = False,
        snapshots: Iterable[int] = (),
        generator: torch.Generator | None = None,
    ) -> SolveResult:
        T = self.max_steps if budget is None else int(budget)
        if T < 0:
            raise ValueError(f"GradientDescent: budget must be >= 0, got {T}.")
        wanted = {int(s) for s in snapshots}
        if any(s < 0 or s > T for s in wanted):
            raise ValueError(f"GradientDescent: snapshots {sorted(wanted)} must lie in [0, budget={T}].")
        first_graph_step = 0 if self.truncate == 0 else T - self.truncate

        def graph_at(t: int) -> bool:
            return differentiable and t >= first_graph_step

        # The energy of the final iterate is only needed when someone reads it: evaluation,
        # accept-if-lower, a recorded history. Training with plain descent skips that pass.
        final_energy_needed = not differentiable or self.accept_if_lower or record_history

        y = y0 if differentiable else y0.detach()
        e, g = self._evaluate(energy, x, y, 0, need_grad=T > 0, create_graph=graph_at(0))
        if e.dim() != 1:
            raise ValueError(
                f"{describe(energy)} returned energies of shape {tuple(e.shape)}; a solver needs one per instance."
            )
        n = e.shape[0]
        device = e.device
        status = torch.full((n,), int(Status.MAX_STEPS), dtype=torch.long, device=device)
        steps = torch.zeros(n, dtype=torch.long, device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        lr = torch.ones(n, device=device, dtype=y.dtype)  # per-instance multiplier of step_size

        finite = self._finite(e, g, segment, n)
        status = torch.where(finite, status, torch.full_like(status, int(Status.DIVERGED)))
        active = finite
        if g is not None:
            g = torch.where(per_row(finite, g, segment), g, torch.zeros_like(g))
        best_energy = torch.where(active, e.detach(), torch.full_like(e.detach(), math.inf))
        best_step = torch.zeros(n, dtype=torch.long, device=device)
        best_y = y.detach().clone()
        history = [e.detach()] if record_history else None
        trajectory = [y] if record_trajectory else None
        taken = {0: y.detach()} if 0 in wanted else {}

        for t in range(1, T + 1):
            if not bool(active.any()):
                break
            if self.grad_tol is not None:
                gnorm = per_instance_sum(g.detach() ** 2, segment, n).sqrt()
                done = active & (gnorm < self.grad_tol)
                status = torch.where(done, torch.full_like(status, int(Status.CONVERGED)), status)
                active = active & ~done
            step_g = self._clip(g, segment, n)
            update = per_row(lr, y, segment) * self.step_size * step_g
            proposal = y - update
            if self.noise > 0:
                noise = torch.randn(y.shape, generator=generator, device=device, dtype=y.dtype)
                proposal = proposal + self.noise * noise
            rows_active = per_row(active, y, segment)
            proposal = torch.where(rows_active, proposal, y)

            skip_eval = t == T and not final_energy_needed
            if skip_eval:
                e_new, g_new, finite = e, torch.zeros_like(g), active
            else:
                e_new, g_new = self._evaluate(energy, x, proposal, t, need_grad=t < T, create_graph=graph_at(t))
                g_new = torch.zeros_like(g) if g_new is None else g_new
                finite = self._finite(e_new, g_new, segment, n)
                g_new = torch.where(per_row(finite, g_new, segment), g_new, torch.zeros_like(g_new))
            steps = steps + active.long()

            if self.accept_if_lower:
                # a non-finite proposal is just a bad proposal: reject it and shrink the step
                accept = active & finite & (e_new < e)
                lr = torch.where(active & ~accept, lr * self.shrink, lr)
            else:
                accept = active & finite
                diverged = active & ~finite
                status = torch.where(diverged, torch.full_like(status, int(Status.DIVERGED)), status)
                active = accept
            # rejected and diverged instances keep their last finite iterate
            rows_accept = per_row(accept, y, segment)
            y = torch.where(rows_accept, proposal, y)
            e = torch.where(accept, e_new, e)
            g = torch.where(rows_accept, g_new, g)

            if t < T or final_energy_needed:
                better = active & (e.detach() < best_energy)
                best_energy = torch.where(better, e.detach(), best_energy)
                best_step = torch.where(better, torch.full_like(best_step, t), best_step)
                best_y = torch.where(per_row(better, y, segment), y.detach(), best_y)
            if history is not None:
                history.append(e.detach())
            if trajectory is not None:
                trajectory.append(y)
            if t in wanted:
                taken[t] = y.detach()

        for s in wanted:  # instances that stopped early keep their final iterate
            taken.setdefault(s, y.detach())
        final_energy = e if final_energy_needed else torch.full_like(e, math.nan)
        final_energy = torch.where(status == int(Status.DIVERGED), torch.full_like(final_energy, math.nan), final_energy)
        best_energy = torch.where(torch.isinf(best_energy), torch.full_like(best_energy, math.nan), best_energy)
        return SolveResult(
            y=y,
            steps=steps,
            status=status,
            energy=final_energy.detach(),
            best_y=best_y,
            best_energy=best_energy,
            best_step=best_step,
            energy_history=torch.stack(history) if history is not None else None,
            trajectory=trajectory,
            snapshots=taken,
            step_size=(lr * self.step_size).detach(),
        )

    def _clip(self, g: Tensor, segment: Tensor | None, n: int) -> Tensor:
        if self.grad_clip is None:
            return g
        norm = per_instance_sum(g.detach() ** 2, segment, n).sqrt()
        scale = (self.grad_clip / norm.clamp_min(1e-12)).clamp(max=1.0)
        return g * per_row(scale, g, segment)

    @staticmethod
    def _finite(e: Tensor, g: Tensor | None, segment: Tensor | None, n: int) -> Tensor:
        """Instances whose energy and whole gradient are finite."""
        finite = torch.isfinite(e.detach())
        if g is not None:
            bad = (~torch.isfinite(g.detach())).to(e.dtype)
            finite = finite & (per_instance_sum(bad, segment, n) == 0)
        return finite
