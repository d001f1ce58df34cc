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
marked diverged; the rest of the batch carries on untouched. With accept-if-lower a non-finite
proposal is first only rejected (the shrunk step may land on finite ground), and the instance is
marked diverged once its energy is not finite at its own iterate either.

The step itself (propose, constraints, accept, momentum, best tracking) is `solvers/step.py`'s,
shared with the adaptive solver; this module holds the settings and the fixed-batch loop. Speed
(the loop runs every training iteration): an energy may offer `prepare(x)`, the part of its
computation that depends on x alone, which the solver calls once per descent and passes in place
of x at every step (MLPEnergy: the x half of its first layer).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.problem import SolveResult, Status
from irem.solver import SolveRequest
from irem.solvers.step import DescentStep, StepSolver, scaled_log_step


class GradientDescent(StepSolver):
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
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"GradientDescent: step_size must be a finite number > 0, got {step_size}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
            raise ValueError(
                f"GradientDescent: max_steps must be a whole number >= 0 (0: the start only, for inference; "
                f"training needs >= 1), got {max_steps!r}."
            )
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(
                f"GradientDescent: noise (the Langevin noise scale) must be a finite number >= 0, got {noise}."
            )
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"GradientDescent: grad_clip must be null (no clipping) or a number > 0, got {grad_clip}.")
        if grad_tol is not None and not (math.isfinite(grad_tol) and grad_tol >= 0):
            raise ValueError(f"GradientDescent: grad_tol must be null (no tolerance) or a number >= 0, got {grad_tol}.")
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

    def descent_step(self) -> DescentStep:
        return DescentStep(
            log_step_size=self.log_step_size,
            multiplier=self.multiplier,
            scheduled=self.schedule != "constant",
            noise=self.noise,
            noise_decay=self.noise_decay,
            accept_if_lower=self.accept_if_lower,
            shrink=self.shrink,
            grad_clip=self.grad_clip,
            grad_tol=self.grad_tol,
            momentum=self.momentum,
            restart=self.restart,
            detach_steps=self.detach_steps,
        )

    def scaled_step(self, factor: float) -> AbstractContextManager[None]:
        return scaled_log_step(self.log_step_size, factor)

    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        differentiable, generator = request.differentiable, request.generator
        record_history, record_trajectory = request.record_history, request.record_trajectory
        T = self.max_steps if budget is None else int(budget)
        randomised = differentiable and budget is None
        if randomised and self.random_steps:
            T += int(torch.randint(0, self.random_steps + 1, (1,), generator=generator))
        if T < 0:
            raise ValueError(f"GradientDescent: budget must be >= 0, got {T}.")
        wanted = set(request.snapshots)
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
        step = self.descent_step()
        s = step.start(energy, x, y, request, need_grad=T > 0, create_graph=graph_at(0))
        if randomised and self.random_step_size:  # per-instance multiplier of step_size, uniform in [1/2, 2]
            gen_device = generator.device if generator is not None else s.e.device
            draw = torch.rand(s.n, generator=generator, device=gen_device, dtype=y.dtype).to(s.e.device)
            s.lr = 0.5 + 1.5 * draw
        history = [s.e.detach()] if record_history else None
        trajectory = [s.y] if record_trajectory else None
        taken = {0: s.y.detach()} if 0 in wanted else {}

        for t in range(1, T + 1):
            if not s.any_active():
                break
            step.step(
                s,
                energy,
                x,
                t,
                T,
                generator,
                need_grad=t < T,
                create_graph=graph_at(t),
                evaluate=t < T or final_energy_needed,
            )
            if history is not None:
                history.append(s.e.detach())
            if trajectory is not None:
                trajectory.append(s.y)
            if t in wanted:
                taken[t] = s.y.detach()

        for b in wanted:  # instances that stopped early keep their final iterate
            taken.setdefault(b, s.y.detach())
        e = s.e
        final_energy = e if final_energy_needed else torch.full_like(e, math.nan)
        final_energy = torch.where(
            s.status == int(Status.DIVERGED), torch.full_like(final_energy, math.nan), final_energy
        )
        return SolveResult(
            y=s.y,
            steps=s.steps,
            status=s.status,
            energy=final_energy.detach(),
            best_y=s.handed_out_best_y(),
            best_energy=s.reported_best_energy(),
            best_step=s.best_step,
            energy_history=torch.stack(history) if history is not None else None,
            trajectory=trajectory,
            snapshots=taken,
            step_size=(s.lr * self.step_size).detach(),
            evaluations=s.steps + 1,
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
