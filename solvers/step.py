"""The descent step, written once: one step of a transform chain for every instance of a state.

`DescentStep` advances a `DescentState` (solvers/state.py) by one step: the chain's direction,
step size and move (solvers/transform.py), the problem's answer constraint, the energy of the
proposal, acceptance (every finite proposal, or the chain's accept-if-lower; an instance whose
energy is not finite is frozen at its last finite iterate and marked diverged, the rest of the
batch untouched), what the transforms carry to the next step, and the lowest-energy iterate.
Every descent (solvers/loop.py: fixed, halting, annealed, IRED's negatives) steps through it, so a
transform works in each of them.

Hot path: every `torch.where` over whole answers is skipped while its mask is known to be all
true (the host flag `all_active`: no instance has stopped), which returns its first argument
unchanged, values and gradient alike; results are bit-for-bit those of the plain masked loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction, describe
from irem.problem import AnswerConstraint, Status, per_instance_sum, per_row
from irem.solvers.state import DescentState, energy_and_grad, finite_instances
from irem.solvers.transform import StepContext, Transform, overrides


class DescentStep:
    """One step of gradient descent through `chain` (see the module docstring).

    `log_step_size` is the solver's own tensor (a learnable step stays a parameter: every step
    differentiates through it). `grad_tol`: an instance whose gradient norm falls below it stops,
    converged, before its next step. `detach_steps`: each step starts from a detached iterate and
    evaluates its proposal detached, so a loss on an iterate differentiates that step through its
    own gradient only (EBT's per-step backward mode).
    """

    def __init__(
        self,
        log_step_size: Tensor,
        chain: Sequence[Transform] = (),
        grad_tol: float | None = None,
        detach_steps: bool = False,
    ) -> None:
        self.log_step_size = log_step_size
        self.chain = tuple(chain)
        self.grad_tol = grad_tol
        self.detach_steps = detach_steps
        accepts = [t for t in self.chain if overrides(t, "accept")]
        appliers = [t for t in self.chain if overrides(t, "apply")]
        if len(accepts) > 1 or len(appliers) > 1:
            twice = accepts if len(accepts) > 1 else appliers
            raise ValueError(
                f"a descent step decides acceptance and applies its move once; the chain has "
                f"{', '.join(map(repr, twice))} doing the same: keep one."
            )
        self._accept = accepts[0] if accepts else None
        hooks = ("direction", "scale", "apply", "move", "after")
        self._with = {h: [(i, t) for i, t in enumerate(self.chain) if overrides(t, h)] for h in hooks}

    @property
    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    @property
    def decides_acceptance(self) -> bool:
        """Whether a transform decides which proposals are kept (it then reads the final energy)."""
        return self._accept is not None

    # -- the first iterate --------------------------------------------------------------------
    def start(
        self,
        energy: EnergyFunction,
        x: Any,
        y0: Tensor,
        segment: Tensor | None,
        constraint: AnswerConstraint | None,
        need_grad: bool,
        create_graph: bool,
        training: bool = False,
        generator: torch.Generator | None = None,
        lr: Tensor | None = None,
    ) -> DescentState:
        """The state at `y0` (constrained), its energy and gradient; non-finite instances start diverged.

        `lr`: each instance's starting step multiplier (default 1; the chain may draw its own in a
        `training` solve). The segment and constraint stay with the state for every later step."""
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
        multiplier = torch.ones(n, device=device, dtype=y.dtype) if lr is None else lr.to(device=device, dtype=y.dtype)
        for t in self.chain:
            multiplier = t.start(multiplier, training, generator)
        return DescentState(
            y=y,
            g=g,
            e=e,
            lr=multiplier,
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
            chain=[t.init(y, n) for t in self.chain],
            row_keys=[t.per_row for t in self.chain],
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
        training: bool = False,
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
        ctx = StepContext(start, s.g, s.lr, t, budget, seg, n, generator, training)
        proposal = self.propose(s, ctx)
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

        def diverged_here(candidates: Tensor) -> Tensor:
            return self.non_finite_here(s, energy, x, t, candidates)

        decided = (
            None if self._accept is None else self._accept.accept(s, e_new, finite, all_finite, evaluate, diverged_here)
        )
        if decided is None:  # every finite proposal; an instance whose proposal is not finite has diverged
            accept = s.active & finite
            all_accept = s.all_active and all_finite
            if not all_accept:
                s.stop(s.active & ~finite, Status.DIVERGED)
        else:
            accept, all_accept = decided
        taken = self._taken(proposal, start, accept, all_accept, seg) if self._with["after"] else None
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
        for i, tr in self._with["after"]:
            tr.after(s.chain[i], taken, accept, s.g, ctx)
        if evaluate:
            self.track_best(s, t)

    def propose(self, s: DescentState, ctx: StepContext) -> Tensor:
        """The chain's proposal from the step's start `ctx.y`: y - lr * step * d, moved."""
        d = ctx.g
        for i, tr in self._with["direction"]:
            d = tr.direction(d, s.chain[i], ctx)
        step = self.step_size
        for _, tr in self._with["scale"]:
            step = tr.scale(step, ctx)
        update = per_row(ctx.lr, ctx.y, ctx.segment) * step * d
        proposal = None
        for _, tr in self._with["apply"]:
            proposal = tr.apply(ctx.y, update, ctx)
        if proposal is None:
            proposal = ctx.y - update
        for i, tr in self._with["move"]:
            proposal = tr.move(proposal, s.chain[i], ctx)
        return proposal

    def step_sizes(self, lr: Tensor, t: int, budget: int) -> Tensor:
        """The step each instance would take at step t: its multiplier (shrunk by rejections) times
        the step size and the chain's schedule. Halting rules read it (StepCollapse)."""
        step = lr * self.step_size
        ctx = StepContext(lr, lr, lr, t, budget, None, lr.shape[0], None)
        for _, tr in self._with["scale"]:
            step = tr.scale(step, ctx)
        return step

    @staticmethod
    def _taken(proposal: Tensor, start: Tensor, accept: Tensor, all_accept: bool, segment: Tensor | None) -> Tensor:
        """The move each row made (proposal - start), zero where it was rejected or stopped."""
        step = proposal - start
        return step if all_accept else torch.where(per_row(accept, start, segment), step, torch.zeros_like(step))

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
