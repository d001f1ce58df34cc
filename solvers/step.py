"""The descent step, written once: per-instance state and the step every descent loop takes.

`DescentState` holds what each instance of the active batch carries from step to step: the
iterate and its gradient and energy, its step-size multiplier (shrunk by rejections), its
heavy-ball velocity, its status and whether it still moves, the steps it took, and its
lowest-energy iterate. `DescentStep` advances a state by one step: propose (gradient step, clip,
schedule, noise, momentum), apply the problem's answer constraint, evaluate, accept (all finite
proposals, or only those that lower the energy, marking diverged an instance whose energy is
not finite even at its own iterate), update the velocity (and restart it), and track
the best iterate. The fixed-batch loop (solvers/gradient_descent.py), the compacting adaptive loop
(solvers/adaptive.py) and the solvers that wrap them (best-of-N) all step through it, so an option
added here works in every one of them.

A descent solver that can be wrapped is a `StepSolver`: it hands out its step (`descent_step`)
and prepares inputs; wrappers use only that interface, never the solver's attributes.

Hot path: every `torch.where` over whole answers is skipped while its mask is known to be all
true (the host flag `all_active`: no instance has stopped), which returns its first argument
unchanged, values and gradient alike; results are bit-for-bit those of the plain masked loop.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction, describe
from irem.problem import AnswerConstraint, Status, per_instance_sum, per_row
from irem.solver import Solver, SolveRequest


@dataclass
class DescentState:
    """Per-instance state of the instances a descent is stepping (the active batch).

    Row tensors (`y`, `g`, `velocity`, `best_y`) have one row per answer row (rows of an instance
    share its `segment` id); instance tensors have one entry per instance. `active` marks the
    instances that still move; `all_active` is its host-side summary (True only when every one
    does). `accepted` and `previous_energy` describe the last step, for halting rules.
    """

    y: Tensor
    g: Tensor | None
    e: Tensor
    lr: Tensor
    velocity: Tensor | None
    status: Tensor
    active: Tensor
    all_active: bool
    steps: Tensor
    best_y: Tensor
    best_e: Tensor
    best_step: Tensor
    segment: Tensor | None
    n: int
    constraint: AnswerConstraint | None = None
    accepted: Tensor | None = None
    previous_energy: Tensor | None = None
    best_y_is_iterate: bool = False  # best_y shares storage with an iterate (clone before handing out)

    def any_active(self) -> bool:
        return self.all_active or bool(self.active.any())

    def select(self, keep: Tensor, rows: Tensor, segment: Tensor | None) -> DescentState:
        """The state of instances `keep` (local ids) whose answer rows are `rows`, renumbered by
        `segment`: what an adaptive solver keeps when finished instances leave the batch."""

        def rows_of(v: Tensor | None) -> Tensor | None:
            return None if v is None else v[rows]

        def inst(v: Tensor | None) -> Tensor | None:
            return None if v is None else v[keep]

        active = self.active[keep]
        return replace(
            self,
            y=self.y[rows],
            g=rows_of(self.g),
            e=self.e[keep],
            lr=self.lr[keep],
            velocity=rows_of(self.velocity),
            status=self.status[keep],
            active=active,
            all_active=bool(active.all()),
            steps=self.steps[keep],
            best_y=self.best_y[rows],
            best_e=self.best_e[keep],
            best_step=self.best_step[keep],
            segment=segment,
            n=int(keep.numel()),
            constraint=None if self.constraint is None else self.constraint.rows(rows),
            accepted=inst(self.accepted),
            previous_energy=inst(self.previous_energy),
            best_y_is_iterate=False,
        )

    def stop(self, which: Tensor, status: Status) -> None:
        """Instances `which` stop moving, with `status`."""
        self.status = torch.where(which, torch.full_like(self.status, int(status)), self.status)
        self.active = self.active & ~which
        self.all_active = self.all_active and not bool(which.any())

    def reported_best_energy(self) -> Tensor:
        """The lowest energies as a result reports them: NaN (not inf) for an instance that never had
        a finite one."""
        return torch.where(torch.isinf(self.best_e), torch.full_like(self.best_e, math.nan), self.best_e)

    def handed_out_best_y(self) -> Tensor:
        """The best iterates as their own tensor, as a `where` would have made them."""
        return self.best_y.clone() if self.best_y_is_iterate else self.best_y


def energy_and_grad(
    energy: EnergyFunction, x: Any, y: Tensor, step: int, need_grad: bool, create_graph: bool
) -> tuple[Tensor, Tensor | None]:
    """E(x, y) and, when asked, dE/dy (with its graph kept for a differentiable step)."""
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


def finite_instances(e: Tensor, g: Tensor | None, segment: Tensor | None, n: int) -> tuple[Tensor, bool]:
    """Instances whose energy and whole gradient are finite, and whether that is all of them.

    Fast path: a row sum of the gradient is finite only if every entry is (NaN and inf propagate
    through a sum), so one reduction and one host sync settle the common all-finite case. A
    non-finite row sum may also be an overflow of finite entries, so only then the exact
    entry-wise test decides.
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


@dataclass(frozen=True)
class DescentStep:
    """One step of gradient descent for every instance of a state (see the module docstring).

    Built by a `StepSolver` from its settings for one solve. `log_step_size` is the solver's own
    tensor (a learnable step stays a parameter: every step differentiates through it).
    `multiplier(t, budget)` is the schedule's factor on the step (and, with `noise_decay`, the noise)
    at step t of `budget`.
    """

    log_step_size: Tensor
    multiplier: Callable[[int, int], float]
    scheduled: bool = False
    noise: float = 0.0
    noise_decay: bool = False
    accept_if_lower: bool = False
    shrink: float = 0.5
    grad_clip: float | None = None
    grad_tol: float | None = None
    momentum: float = 0.0
    restart: bool = False
    detach_steps: bool = False

    @property
    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    # -- the first iterate --------------------------------------------------------------------
    def start(
        self, energy: EnergyFunction, x: Any, y0: Tensor, request: SolveRequest, need_grad: bool, create_graph: bool
    ) -> DescentState:
        """The state at `y0` (constrained), its energy and gradient; non-finite instances start diverged.

        The request's segment and constraint stay with the state for every later step."""
        segment, constraint = request.segment, request.constraint
        y = y0 if constraint is None else constraint.apply(y0)
        e, g = energy_and_grad(energy, x, y, 0, need_grad, create_graph)
        if e.dim() != 1:
            raise ValueError(
                f"{describe(energy)} returned energies of shape {tuple(e.shape)}; a solver needs one per instance."
            )
        n, device = e.shape[0], e.device
        if g is not None and constraint is not None:
            g = constraint.free_gradient(g)
        status = torch.full((n,), int(Status.MAX_STEPS), dtype=torch.long, device=device)
        finite, all_finite = finite_instances(e, g, segment, n)
        if not all_finite:
            status = torch.where(finite, status, torch.full_like(status, int(Status.DIVERGED)))
            if g is not None:
                g = torch.where(per_row(finite, g, segment), g, torch.zeros_like(g))
        return DescentState(
            y=y,
            g=g,
            e=e,
            lr=torch.ones(n, device=device, dtype=y.dtype),  # per-instance multiplier of the step size
            velocity=torch.zeros_like(y) if self.momentum else None,
            status=status,
            active=finite,
            all_active=all_finite,
            steps=torch.zeros(n, dtype=torch.long, device=device),
            best_y=y.detach().clone(),
            best_e=torch.where(finite, e.detach(), torch.full_like(e.detach(), math.inf)),
            best_step=torch.zeros(n, dtype=torch.long, device=device),
            segment=segment,
            n=n,
            constraint=constraint,
        )

    # -- one step -------------------------------------------------------------------------------
    def step(
        self,
        s: DescentState,
        energy: EnergyFunction,
        x: Any,
        t: int,
        budget: int,
        generator: torch.Generator | None = None,
        *,
        need_grad: bool = True,
        create_graph: bool = False,
        evaluate: bool = True,
    ) -> None:
        """Advance `s` by step `t` of `budget`, in place.

        `need_grad`: compute the gradient at the new iterate (not after the last step).
        `create_graph`: keep the step's graph (a differentiable solve). `evaluate=False` skips the
        energy of the new iterate when nothing reads it (a training solve's last step); every
        proposal is then accepted and the best iterate is left alone.
        """
        seg, n = s.segment, s.n
        if self.grad_tol is not None:
            gnorm = per_instance_sum(s.g.detach() ** 2, seg, n).sqrt()
            s.stop(s.active & (gnorm < self.grad_tol), Status.CONVERGED)
        start = s.y.detach() if self.detach_steps else s.y
        proposal = self.propose(start, s.g, s.lr, seg, n, generator, t=t, budget=budget, velocity=s.velocity)
        if s.constraint is not None:
            proposal = s.constraint.apply(proposal)
        if not s.all_active:
            proposal = torch.where(per_row(s.active, s.y, seg), proposal, s.y)

        if evaluate:
            at = proposal.detach() if self.detach_steps else proposal
            e_new, g_new = energy_and_grad(energy, x, at, t, need_grad, create_graph)
            if g_new is not None and s.constraint is not None:
                g_new = s.constraint.free_gradient(g_new)
            finite, all_finite = finite_instances(e_new, g_new, seg, n)
            if g_new is not None and not all_finite:
                g_new = torch.where(per_row(finite, g_new, seg), g_new, torch.zeros_like(g_new))
        else:
            e_new, g_new, finite, all_finite = s.e, None, s.active, s.all_active
        s.steps = s.steps + s.active.long()

        if self.accept_if_lower:
            # a non-finite proposal is a bad proposal (a step too long can overflow): reject it and
            # shrink the step; but an instance whose energy is not finite even where it stands has
            # diverged, since no step size can bring it back (checked only when a proposal failed)
            accept = s.active & finite & (e_new < s.e)
            if evaluate and not all_finite:
                s.stop(self.non_finite_here(s, energy, x, t, s.active & ~finite), Status.DIVERGED)
            s.lr = torch.where(s.active & ~accept, s.lr * self.shrink, s.lr)
            all_accept = bool(accept.all())
        else:
            accept = s.active & finite
            all_accept = s.all_active and all_finite
            if not all_accept:
                s.stop(s.active & ~finite, Status.DIVERGED)
        if s.velocity is not None:
            s.velocity = self.next_velocity(proposal, start, accept, all_accept, seg)
        # rejected and diverged instances keep their last finite iterate
        g_next = torch.zeros_like(s.g) if g_new is None else g_new
        if all_accept:
            s.y, s.g = proposal, g_next
        else:
            rows_accept = per_row(accept, s.y, seg)
            s.y = torch.where(rows_accept, proposal, s.y)
            s.g = torch.where(rows_accept, g_next, s.g)
        s.previous_energy, s.e = s.e, torch.where(accept, e_new, s.e)
        s.accepted = accept
        if s.velocity is not None and self.restart:
            s.velocity = self.restart_velocity(s.velocity, s.g, seg, n)
        if evaluate:
            self.track_best(s, t)

    @staticmethod
    def non_finite_here(s: DescentState, energy: EnergyFunction, x: Any, t: int, candidates: Tensor) -> Tensor:
        """Instances among `candidates` whose energy at step t is not finite at their current iterate.

        Accept-if-lower keeps the last iterate whose energy was finite, so a solve whose energy
        turned NaN or infinite there (weights gone NaN, an energy that breaks at some step) would
        otherwise reject every later proposal and end as `max_steps` with an old, finite energy.
        One extra energy pass over the batch, without a graph, taken only after a non-finite
        proposal.
        """
        e_here, _ = energy_and_grad(energy, x, s.y.detach(), t, need_grad=False, create_graph=False)
        return candidates & ~torch.isfinite(e_here)

    def track_best(self, s: DescentState, t: int) -> None:
        """Keep each moving instance's lowest-energy iterate (energy t pairs with iterate t)."""
        e = s.e.detach()
        better = s.active & (e < s.best_e)
        s.best_e = torch.where(better, e, s.best_e)
        s.best_step = torch.where(better, torch.full_like(s.best_step, t), s.best_step)
        n_better = int(better.sum())  # one host sync decides all / some / none
        if n_better == s.n:
            s.best_y, s.best_y_is_iterate = s.y.detach(), True
        elif n_better > 0:
            s.best_y = torch.where(per_row(better, s.y, s.segment), s.y.detach(), s.best_y)
            s.best_y_is_iterate = False

    # -- the pieces of a step ---------------------------------------------------------------------
    def propose(
        self,
        y: Tensor,
        g: Tensor,
        lr: Tensor,
        segment: Tensor | None,
        n: int,
        generator: torch.Generator | None,
        *,
        t: int,
        budget: int,
        velocity: Tensor | None = None,
    ) -> Tensor:
        """y - lr * step_size * clip(dE/dy) (+ noise) (+ momentum * velocity), `lr` per instance, at
        step `t` of `budget`; `velocity` is each instance's last step (`next_velocity`)."""
        mult = self.multiplier(t, budget) if self.scheduled else 1.0
        step = self.step_size * mult if self.scheduled else self.step_size
        update = per_row(lr, y, segment) * step * self.clip(g, segment, n)
        proposal = y - update
        if velocity is not None and self.momentum:
            proposal = proposal + self.momentum * velocity
        if self.noise > 0:
            # drawn where the generator lives (the trainer's is on the CPU), then moved
            gen_device = generator.device if generator is not None else y.device
            noise = torch.randn(y.shape, generator=generator, device=gen_device, dtype=y.dtype).to(y.device)
            proposal = proposal + (self.noise * mult if self.noise_decay else self.noise) * noise
        return proposal

    def clip(self, g: Tensor, segment: Tensor | None, n: int) -> Tensor:
        """The gradient with each instance's norm capped at `grad_clip`."""
        if self.grad_clip is None:
            return g
        norm = per_instance_sum(g.detach() ** 2, segment, n).sqrt()
        scale = (self.grad_clip / norm.clamp_min(1e-12)).clamp(max=1.0)
        return g * per_row(scale, g, segment)

    def next_step_size(self, lr: Tensor, t: int, budget: int) -> Tensor:
        """The step each instance would take at step t: its multiplier (shrunk by rejections) times
        the step size and the schedule's factor. Halting rules read it (StepCollapse)."""
        step = lr * self.step_size
        return step * self.multiplier(t, budget) if self.scheduled else step

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


class StepSolver(Solver):
    """A descent solver that other solvers can drive step by step (adaptive halting, best-of-N).

    A wrapper reads nothing of the solver but this interface: the step for one solve, the input
    preparation, and a temporary change of the step size (best-of-N's restarts).
    """

    @abc.abstractmethod
    def descent_step(self) -> DescentStep:
        """The step this solver takes at inference, with its current settings."""

    @abc.abstractmethod
    def scaled_step(self, factor: float) -> AbstractContextManager[None]:
        """A context in which the step size is `factor` times what it is, restored on exit."""

    @staticmethod
    def prepare_input(energy: EnergyFunction, x: Any, differentiable: bool) -> Any:
        """Let the energy precompute what depends on x alone, once per descent.

        Under a differentiable solve it is built with grad enabled so parameters reached only
        through it still get their gradient; otherwise without a graph, since nothing is
        differentiated through a non-differentiable solve.
        """
        with torch.enable_grad() if differentiable else torch.no_grad():
            return energy.prepare(x)


@contextmanager
def scaled_log_step(log_step: Tensor, factor: float) -> Iterator[None]:
    """A log step-size tensor (a parameter or a buffer) shifted by log(factor), restored bit for bit."""
    saved = log_step.detach().clone()
    try:
        with torch.no_grad():
            log_step.add_(math.log(factor))
        yield
    finally:
        with torch.no_grad():
            log_step.copy_(saved)
