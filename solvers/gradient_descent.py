"""Gradient descent on E(x, y) in y, with per-instance bookkeeping.

One solver covers IREM's fixed-step descent and its variants: a learnable step size, Langevin
noise, heavy-ball momentum, accept-only-if-lower (with per-instance step shrinking on rejection),
per-instance gradient clipping, a gradient-norm tolerance, and truncated backprop through the
last k steps.
For training, the EBT paper's System 2 recipe: each training solve may draw a per-instance step
size uniformly in [a/2, 2a] and a number of steps in [K, K + random_steps], so the energy learns a
landscape that many step sizes and budgets descend well (inference then runs more steps than
training), and `detach_steps` cuts the graph between steps so each step learns to improve on
wherever the previous one left it.

A step-size schedule anneals the landscape walk: large steps early to cross between basins, small
ones late to settle into one (optionally with the Langevin noise cooled by the same factor).
An instance whose energy or gradient is not finite is frozen at its last finite iterate and
marked diverged; the rest of the batch carries on untouched.

Speed (the loop runs every training iteration): an energy may offer `prepare(x)`, the part of
its computation that depends on x alone, which the solver calls once per descent and passes in
place of x at every step (MLPEnergy: the x half of its first layer). Per-instance masking with
`torch.where` is skipped while no instance has stopped, and the finiteness check costs one row
sum of the gradient unless something is not finite; results are bit-for-bit those of the plain
masked loop.
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
    for (IREM: 1); 0 unrolls every step. `detach_steps` (EBT) differentiates each kept step through
    its own gradient only: its starting point is detached, so no gradient flows from one step into
    the previous one. Training solves only (`differentiable`, no budget given): `random_step_size`
    multiplies each instance's step by a factor drawn uniformly in [1/2, 2], and `random_steps`
    adds a number of steps drawn uniformly in [0, random_steps] to `max_steps`.

    `schedule` multiplies the step of step t of a budget T by a factor that falls from 1 at t=1 to
    `final_fraction` at t=T (`SCHEDULES`); the schedule is stretched over whatever budget a solve
    gets, so a short and a long evaluation budget both end on small steps. `noise_decay` cools the Langevin noise by the same factor. Hence, with a
    schedule, the snapshot after b steps of a longer solve is a point on that longer annealed path,
    not the answer of a b-step solve (which would have annealed sooner).

    `momentum` (heavy ball, Polyak) adds `momentum` times the instance's last step to each step:
    y_{t+1} = y_t - step * g_t + momentum * (y_t - y_{t-1}). On a landscape whose curvature
    differs a lot between directions, plain descent needs a number of steps that grows with the
    curvature ratio, heavy ball about with its square root, so the same budget goes further
    while harder instances still take longer. A rejected proposal (accept-if-lower) zeroes that
    instance's velocity, so it restarts from a plain step. `restart` (gradient restart, O'Donoghue
    and Candes 2015) also zeroes it when the new gradient points along the last step (g . v > 0):
    the momentum is then carrying the iterate uphill, which is what makes heavy ball overshoot and
    oscillate; a restart lets a larger momentum speed up the descent without the oscillation.
    """

    SCHEDULES = ("constant", "linear", "cosine", "exponential")

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
        schedule: str = "constant",
        final_fraction: float = 0.1,
        noise_decay: bool = False,
        random_step_size: bool = False,
        random_steps: int = 0,
        detach_steps: bool = False,
        momentum: float = 0.0,
        restart: bool = False,
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
        if schedule not in self.SCHEDULES:
            raise ValueError(f"Unknown schedule '{schedule}'. Valid choices: {', '.join(self.SCHEDULES)}.")
        if not 0 < final_fraction <= 1:
            raise ValueError(
                f"GradientDescent: final_fraction (the step multiplier at the last step) must be in (0, 1], "
                f"got {final_fraction}."
            )
        if isinstance(random_steps, bool) or not isinstance(random_steps, int) or random_steps < 0:
            raise ValueError(f"GradientDescent: random_steps must be an integer >= 0, got {random_steps!r}.")
        if not 0 <= momentum < 1:
            raise ValueError(f"GradientDescent: momentum must be in [0, 1), got {momentum}.")
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
        self.schedule = schedule
        self.final_fraction = float(final_fraction)
        self.noise_decay = bool(noise_decay)
        self.random_step_size = bool(random_step_size)
        self.random_steps = int(random_steps)
        self.detach_steps = bool(detach_steps)
        self.momentum = float(momentum)
        self.restart = bool(restart)

    @property
    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    @property
    def snapshots_match_budgets(self) -> bool:
        """Whether the snapshot after b steps equals a b-step solve, so one run can report every budget
        (irem/evaluation.py relies on it). An annealed schedule depends on the budget: it does not."""
        return self.schedule == "constant"

    def energy_and_grad(
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
        randomised = differentiable and budget is None
        if randomised and self.random_steps:
            T += int(torch.randint(0, self.random_steps + 1, (1,), generator=generator))
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
        x = self.prepare_input(energy, x, differentiable)
        e, g = self.energy_and_grad(energy, x, y, 0, need_grad=T > 0, create_graph=graph_at(0))
        if e.dim() != 1:
            raise ValueError(
                f"{describe(energy)} returned energies of shape {tuple(e.shape)}; a solver needs one per instance."
            )
        n = e.shape[0]
        device = e.device
        status = torch.full((n,), int(Status.MAX_STEPS), dtype=torch.long, device=device)
        steps = torch.zeros(n, dtype=torch.long, device=device)
        lr = torch.ones(n, device=device, dtype=y.dtype)  # per-instance multiplier of step_size
        if randomised and self.random_step_size:
            gen_device = generator.device if generator is not None else device
            draw = torch.rand(n, generator=generator, device=gen_device, dtype=y.dtype).to(device)
            lr = 0.5 + 1.5 * draw  # uniform in [1/2, 2] times the step size

        # Hot-path note: every `torch.where` over whole answers below is skipped when its mask is
        # known to be all-true (the usual case: no instance diverged or stopped). The skipped
        # where would return its first argument unchanged, values and gradient alike, so results
        # are identical; `all_active` is the host-side flag that knows it.
        finite, all_finite = self.finite_instances(e, g, segment, n)
        if not all_finite:
            status = torch.where(finite, status, torch.full_like(status, int(Status.DIVERGED)))
            if g is not None:
                g = torch.where(per_row(finite, g, segment), g, torch.zeros_like(g))
        active = finite
        all_active = all_finite
        best_energy = torch.where(active, e.detach(), torch.full_like(e.detach(), math.inf))
        best_step = torch.zeros(n, dtype=torch.long, device=device)
        best_y = y.detach().clone()
        best_y_is_iterate = False  # best_y currently shares storage with an iterate (cloned at the end)
        history = [e.detach()] if record_history else None
        trajectory = [y] if record_trajectory else None
        taken = {0: y.detach()} if 0 in wanted else {}
        velocity = torch.zeros_like(y) if self.momentum else None  # each instance's last step

        for t in range(1, T + 1):
            if not all_active and not bool(active.any()):
                break
            if self.grad_tol is not None:
                gnorm = per_instance_sum(g.detach() ** 2, segment, n).sqrt()
                done = active & (gnorm < self.grad_tol)
                status = torch.where(done, torch.full_like(status, int(Status.CONVERGED)), status)
                active = active & ~done
                all_active = all_active and not bool(done.any())
            start = y.detach() if self.detach_steps else y
            proposal = self.propose(start, g, lr, segment, n, generator, t=t, budget=T, velocity=velocity)
            if not all_active:
                proposal = torch.where(per_row(active, y, segment), proposal, y)

            skip_eval = t == T and not final_energy_needed
            if skip_eval:
                e_new, g_new, finite, all_finite = e, None, active, all_active
            else:
                at = proposal.detach() if self.detach_steps else proposal
                e_new, g_new = self.energy_and_grad(energy, x, at, t, need_grad=t < T, create_graph=graph_at(t))
                finite, all_finite = self.finite_instances(e_new, g_new, segment, n)
                if g_new is not None and not all_finite:
                    g_new = torch.where(per_row(finite, g_new, segment), g_new, torch.zeros_like(g_new))
            steps = steps + active.long()

            if self.accept_if_lower:
                # a non-finite proposal is just a bad proposal: reject it and shrink the step
                accept = active & finite & (e_new < e)
                lr = torch.where(active & ~accept, lr * self.shrink, lr)
                all_accept = bool(accept.all())
            else:
                accept = active & finite
                all_accept = all_active and all_finite
                if not all_accept:
                    diverged = active & ~finite
                    status = torch.where(diverged, torch.full_like(status, int(Status.DIVERGED)), status)
                active = accept
                all_active = all_accept
            if velocity is not None:
                velocity = self.next_velocity(proposal, start, accept, all_accept, segment)
            # rejected and diverged instances keep their last finite iterate
            if all_accept:
                y = proposal
                g = torch.zeros_like(g) if g_new is None else g_new
            else:
                rows_accept = per_row(accept, y, segment)
                y = torch.where(rows_accept, proposal, y)
                g = torch.where(rows_accept, torch.zeros_like(g) if g_new is None else g_new, g)
            e = torch.where(accept, e_new, e)
            if velocity is not None and self.restart:
                velocity = self.restart_velocity(velocity, g, segment, n)

            if t < T or final_energy_needed:
                better = active & (e.detach() < best_energy)
                best_energy = torch.where(better, e.detach(), best_energy)
                best_step = torch.where(better, torch.full_like(best_step, t), best_step)
                n_better = int(better.sum())  # one host sync decides all / some / none
                if n_better == n:
                    best_y, best_y_is_iterate = y.detach(), True
                elif n_better > 0:
                    best_y, best_y_is_iterate = torch.where(per_row(better, y, segment), y.detach(), best_y), False
            if history is not None:
                history.append(e.detach())
            if trajectory is not None:
                trajectory.append(y)
            if t in wanted:
                taken[t] = y.detach()

        for s in wanted:  # instances that stopped early keep their final iterate
            taken.setdefault(s, y.detach())
        if best_y_is_iterate:  # best_y is its own tensor, as a where would have made it
            best_y = best_y.clone()
        final_energy = e if final_energy_needed else torch.full_like(e, math.nan)
        final_energy = torch.where(
            status == int(Status.DIVERGED), torch.full_like(final_energy, math.nan), final_energy
        )
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

    def multiplier(self, t: int, budget: int) -> float:
        """The schedule's factor on the step (and, with `noise_decay`, the noise) of step t of `budget`.

        Progress p = (t - 1) / (budget - 1) runs from 0 at the first step to 1 at the last, so
        the first step is always a full one and the last one is `final_fraction` of it; a budget
        of one step takes the full step.
        """
        if self.schedule == "constant":
            return 1.0
        if t < 1:
            raise ValueError(f"GradientDescent: steps are numbered from 1, got t={t}.")
        p = 0.0 if budget <= 1 else min((t - 1) / (budget - 1), 1.0)
        f = self.final_fraction
        if self.schedule == "linear":
            return 1.0 + (f - 1.0) * p
        if self.schedule == "cosine":
            return f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * p))
        return f**p  # exponential: a constant ratio between consecutive steps

    def propose(
        self,
        y: Tensor,
        g: Tensor,
        lr: Tensor,
        segment: Tensor | None,
        n: int,
        generator: torch.Generator | None,
        *,
        t: int = 1,
        budget: int | None = None,
        velocity: Tensor | None = None,
    ) -> Tensor:
        """The next candidate: y - lr * step_size * clip(dE/dy) (+ noise) (+ momentum * velocity),
        `lr` per instance, at step `t` of `budget` (default `max_steps`), which a schedule needs to
        know where it stands; `velocity` is each instance's last step (`next_velocity`).

        Public so a solver that wraps this one (solvers/adaptive.py) takes the same steps.
        """
        scheduled = self.schedule != "constant"
        mult = self.multiplier(t, self.max_steps if budget is None else budget) if scheduled else 1.0
        step = self.step_size * mult if scheduled else self.step_size
        update = per_row(lr, y, segment) * step * self._clip(g, segment, n)
        proposal = y - update
        if velocity is not None and self.momentum:
            proposal = proposal + self.momentum * velocity
        if self.noise > 0:
            # drawn where the generator lives (the trainer's is on the CPU), then moved
            gen_device = generator.device if generator is not None else y.device
            noise = torch.randn(y.shape, generator=generator, device=gen_device, dtype=y.dtype).to(y.device)
            proposal = proposal + (self.noise * mult if self.noise_decay else self.noise) * noise
        return proposal

    @staticmethod
    def next_velocity(proposal: Tensor, y: Tensor, accept: Tensor, all_accept: bool, segment: Tensor | None) -> Tensor:
        """The step each instance just took (proposal - y), zero where it was rejected or stopped."""
        step = proposal - y
        return step if all_accept else torch.where(per_row(accept, y, segment), step, torch.zeros_like(step))

    @staticmethod
    def restart_velocity(velocity: Tensor, g: Tensor, segment: Tensor | None, n: int) -> Tensor:
        """`velocity`, zeroed for instances whose gradient `g` (at the iterate the velocity led to)
        has a positive inner product with it: the last step went uphill along g."""
        uphill = per_instance_sum((g.detach() * velocity.detach()), segment, n) > 0
        return torch.where(per_row(uphill, velocity, segment), torch.zeros_like(velocity), velocity)

    @staticmethod
    def prepare_input(energy: EnergyFunction, x: Any, differentiable: bool) -> Any:
        """Let the energy precompute what depends on x alone, once per descent.

        Under a differentiable solve it is built with grad enabled so parameters reached only
        through it still get their gradient; otherwise without a graph, since nothing is
        differentiated through a non-differentiable solve.
        """
        with torch.enable_grad() if differentiable else torch.no_grad():
            return energy.prepare(x)

    def _clip(self, g: Tensor, segment: Tensor | None, n: int) -> Tensor:
        if self.grad_clip is None:
            return g
        norm = per_instance_sum(g.detach() ** 2, segment, n).sqrt()
        scale = (self.grad_clip / norm.clamp_min(1e-12)).clamp(max=1.0)
        return g * per_row(scale, g, segment)

    @staticmethod
    def finite_instances(e: Tensor, g: Tensor | None, segment: Tensor | None, n: int) -> tuple[Tensor, bool]:
        """Instances whose energy and whole gradient are finite, and whether that is all of them.

        Fast path: a row sum of the gradient is finite only if every entry is (NaN and inf
        propagate through a sum), so one reduction and one host sync settle the common
        all-finite case. A non-finite row sum may also be an overflow of finite entries, so only
        then the exact entry-wise test decides.
        """
        finite_e = torch.isfinite(e.detach())
        if g is None:
            return finite_e, bool(finite_e.all())
        gd = g.detach()
        finite = finite_e & torch.isfinite(per_instance_sum(gd, segment, n))
        if bool(finite.all()):
            return finite, True
        bad = (~torch.isfinite(gd)).to(e.dtype)
        finite = finite_e & (per_instance_sum(bad, segment, n) == 0)
        return finite, bool(finite.all())
