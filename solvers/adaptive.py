"""Adaptive descent: each instance stops when a halting rule says so, and leaves the batch.

`AdaptiveDescent` wraps a descent solver (`GradientDescent`: its step, noise, clipping and
accept-if-lower) and runs it with per-instance stopping rules from `solvers/halting.py`. Compute
really falls with the number of unfinished instances: when instances stop, the solver indexes
the active set (iterates, gradients, rule state, the problem's x, the energy's prepared input)
down to the rest, so later steps run on a smaller batch; it does not multiply updates by a mask.
Stopped instances are written into full-size results at once.

Training does not halt: a differentiable solve (the IREM loss) is handed to the wrapped solver
unchanged, so a model trains with its plain descent and is evaluated adaptively. With
`descent=None` the solver wraps whatever solver the trained model already has (`with_base`),
which is how `irem-eval solver=adaptive` keeps the model's trained step size.

Records: per instance the steps used, status (CONVERGED when a rule stopped it, MAX_STEPS at the
budget, DIVERGED), the energy history (NaN after an instance stopped), the lowest-energy iterate
and snapshots at the requested budgets (an instance that stopped earlier keeps its final
iterate). `stopped_by` names the rule that stopped each instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction, select_prepared
from irem.problem import (
    Problem,
    SolveResult,
    Status,
    can_select,
    per_instance_sum,
    rows_of,
    select_input,
)
from irem.solver import Solver, SolveRequest
from irem.solvers.halting import GradNorm, HaltingRule, StepInfo
from irem.solvers.step import DescentState, StepSolver
from irem.solvers.wrapper import WrapperSolver


class AdaptiveDescent(WrapperSolver):
    """Descend until every instance is stopped by one of `rules` or reaches `max_steps`.

    `min_steps`: no rule may stop an instance before this many steps. `compact_below`: drop the
    finished instances once the active ones are fewer than this fraction of the current batch
    (1.0: as soon as any stops; below 1 saves re-collating graph batches on every step, at the
    price of computing on a few finished instances whose updates are discarded meanwhile; 0 never
    compacts). The wrapped descent's own `grad_tol` stops an instance too (status converged, no
    rule named). An input that cannot pick the finished instances out (a text window whose
    positions have not all stopped: `InstanceInput.can_select`) keeps them in the batch, frozen,
    until it can.
    """

    config_name = "adaptive"
    adaptive = True

    def __init__(
        self,
        descent: Solver | None = None,
        rules: Sequence[HaltingRule] = (),
        max_steps: int = 80,
        min_steps: int = 1,
        compact_below: float = 1.0,
    ) -> None:
        super().__init__(descent)
        if max_steps < 0:
            raise ValueError(f"AdaptiveDescent: max_steps must be >= 0, got {max_steps}.")
        if min_steps < 0:
            raise ValueError(f"AdaptiveDescent: min_steps must be >= 0, got {min_steps}.")
        if not 0 <= compact_below <= 1:
            raise ValueError(f"AdaptiveDescent: compact_below must be in [0, 1], got {compact_below}.")
        bad = [type(r).__name__ for r in rules if not isinstance(r, HaltingRule)]
        if bad:
            raise TypeError(f"AdaptiveDescent: rules must be HaltingRule objects (solvers/halting.py), got {bad}.")
        self.rules = list(rules)
        self.max_steps = int(max_steps)
        self.min_steps = int(min_steps)
        self.compact_below = float(compact_below)

    def _wrapped(self) -> StepSolver:
        descent = super()._wrapped()
        if not isinstance(descent, StepSolver):
            raise TypeError(
                f"AdaptiveDescent wraps descent solvers that take single steps (a StepSolver, e.g. "
                f"GradientDescent); got {type(descent).__name__}."
                + (
                    " An annealed descent stops instances early on its last landscape itself: give it "
                    "solver.grad_tol=<tolerance> instead."
                    if getattr(descent, "landscape_solver", False)
                    else ""
                )
            )
        return descent

    def run_inference(
        self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest
    ) -> SolveResult:
        segment, generator = request.segment, request.generator
        gd = self._wrapped()
        T = self.max_steps if budget is None else int(budget)
        if T < 0:
            raise ValueError(f"AdaptiveDescent: budget must be >= 0, got {T}.")
        wanted = sorted(set(request.snapshots))
        if any(s < 0 or s > T for s in wanted):
            raise ValueError(f"AdaptiveDescent: snapshots {wanted} must lie in [0, budget={T}].")
        need_norm = any(isinstance(r, GradNorm) for r in self.rules)
        need_verdict = any(r.needs_verifier for r in self.rules)
        if need_verdict and request.verify is None:
            raise ValueError(
                "AdaptiveDescent: a rule needs the task's verifier (verified), which this solve was not given; "
                "an energy model's predict passes Task.check as verify=..."
            )
        step = gd.descent_step()

        with torch.no_grad():
            px = gd.prepare_input(energy, x, False)
            s = step.start(energy, px, y0.detach(), request, need_grad=T > 0, create_graph=False)
            n, device = s.n, s.e.device
            out = _Outputs(s.y, s.e, n, T, wanted, request.record_history, request.record_trajectory)
            idx = torch.arange(n, device=device)  # original ids of the instances still in the batch
            cur_x = x
            stopped_by = torch.full((n,), -1, dtype=torch.long, device=device)  # the rule that stopped each
            states = [r.start(n, device) for r in self.rules]

            for t in range(1, T + 1):
                if not s.all_active:
                    out.finish(~s.active, idx, s, segment, stopped_by)
                    if not bool(s.active.any()):
                        idx = idx[:0]  # all written: nothing left to finish
                        break
                    m = idx.numel()
                    if int(s.active.sum()) < self.compact_below * m:
                        keep = s.active.nonzero().squeeze(1)
                        selected = _select(cur_x, s.segment, m, keep, idx)
                        if selected is not None:
                            idx, rows, sub_x, sub_seg = selected
                            px = select_prepared(energy, px, sub_x, keep)
                            cur_x = sub_x
                            s = s.select(keep, rows, sub_seg)
                            stopped_by = stopped_by[keep]
                            states = [{k: v[keep] for k, v in st.items()} for st in states]
                before = s.steps
                step.step(s, energy, px, t, T, generator, need_grad=t < T)
                out.record(t, idx, s.steps > before, s, segment)

                if t < T:
                    gnorm = (
                        per_instance_sum(s.g**2, s.segment, s.n).sqrt() if need_norm else torch.full_like(s.e, math.nan)
                    )
                    info = StepInfo(
                        t=t,
                        energy=s.e,
                        previous_energy=s.previous_energy,
                        grad_norm=gnorm,
                        step_size=step.next_step_size(s.lr, t + 1, T),  # shrunk by rejections, and by the schedule
                        accepted=s.accepted,
                        verified=request.verify(idx, s.y).to(s.active.device) if need_verdict else None,
                    )
                    stop = torch.zeros_like(s.active)
                    for i, rule in enumerate(self.rules):
                        done, states[i] = rule.update(states[i], info)
                        if t >= self.min_steps:
                            fired = s.active & done & ~stop
                            stopped_by = torch.where(fired, torch.full_like(stopped_by, i), stopped_by)
                            stop = stop | fired
                    s.stop(stop, Status.CONVERGED)

            out.finish(torch.ones(idx.numel(), dtype=torch.bool, device=device), idx, s, segment, stopped_by)
        return out.result(self.rules)


def _select(
    x: Any, segment: Tensor | None, m: int, keep: Tensor, idx: Tensor
) -> tuple[Tensor, Tensor, Any, Tensor | None] | None:
    """Keep instances `keep` (local ids) of the active batch: their ids, answer rows, x, segment;
    None when x cannot pick them yet (InstanceInput.can_select)."""
    if not can_select(x, keep):
        return None
    if segment is not None:
        rows, _ = rows_of(segment, keep, m)
        sub = Problem(x=x, segment=segment, num_instances=m).select(keep)
        return idx[keep], rows, sub.x, sub.segment
    return idx[keep], keep, select_input(x, keep), None


class _Outputs:
    """Full-size results that stopped instances are written into."""

    def __init__(
        self, y0: Tensor, e0: Tensor, n: int, T: int, wanted: list[int], history: bool, trajectory: bool
    ) -> None:
        device = e0.device
        self.n, self.T = n, T
        self.y = y0.clone()
        self.energy = torch.full((n,), math.nan, device=device, dtype=e0.dtype)
        self.best_y = y0.clone()
        self.best_energy = torch.full((n,), math.nan, device=device, dtype=e0.dtype)
        self.best_step = torch.zeros(n, dtype=torch.long, device=device)
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        self.status = torch.full((n,), int(Status.MAX_STEPS), dtype=torch.long, device=device)
        self.stopped_by = torch.full((n,), -1, dtype=torch.long, device=device)
        self.snapshots = {b: y0.clone() for b in wanted}
        self.history = None
        if history:
            self.history = torch.full((T + 1, n), math.nan, device=device, dtype=e0.dtype)
            self.history[0] = e0
        self.trajectory = [y0.clone()] if trajectory else None

    def _rows(
        self, local: Tensor, idx: Tensor, cur_seg: Tensor | None, segment: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Answer rows of active instances `local`: in the active batch, and in the full results."""
        if segment is None:
            return local, idx[local]
        return rows_of(cur_seg, local, idx.numel())[0], rows_of(segment, idx[local], self.n)[0]

    def record(self, t: int, idx: Tensor, moving: Tensor, s: DescentState, segment: Tensor | None) -> None:
        """After step t: the energy and iterate of the instances that were `moving` into it."""
        if self.history is not None:
            self.history[t, idx[moving]] = s.e[moving]
        if t in self.snapshots or self.trajectory is not None:
            local = moving.nonzero().squeeze(1)
            src, dst = self._rows(local, idx, s.segment, segment)
            if t in self.snapshots:
                self.snapshots[t][dst] = s.y[src]
            if self.trajectory is not None:
                full = (self.trajectory[-1]).clone()
                full[dst] = s.y[src]
                self.trajectory.append(full)

    def finish(self, which: Tensor, idx: Tensor, s: DescentState, segment: Tensor | None, stopped_by: Tensor) -> None:
        """Write instances `which` (a local mask) into the results; a no-op for rows written before."""
        local = which.nonzero().squeeze(1)
        if local.numel() == 0:
            return
        ids = idx[local]
        src, dst = self._rows(local, idx, s.segment, segment)
        self.y[dst] = s.y[src]
        self.best_y[dst] = s.best_y[src]
        status = s.status[local]
        diverged = status == int(Status.DIVERGED)
        e = s.e[local]
        self.energy[ids] = torch.where(diverged, torch.full_like(e, math.nan), e)
        best_e = s.best_e[local]
        self.best_energy[ids] = torch.where(torch.isinf(best_e), torch.full_like(best_e, math.nan), best_e)
        self.best_step[ids] = s.best_step[local]
        steps = s.steps[local]
        self.steps[ids] = steps
        self.status[ids] = status
        self.stopped_by[ids] = stopped_by[local]
        for b, snap in self.snapshots.items():  # stopped before b: the final iterate stands for b
            early = steps < b
            if bool(early.any()):
                s_src, s_dst = self._rows(local[early], idx, s.segment, segment)
                snap[s_dst] = s.y[s_src]

    def result(self, rules: list[HaltingRule]) -> SolveResult:
        return SolveResult(
            y=self.y,
            steps=self.steps,
            status=self.status,
            energy=self.energy,
            best_y=self.best_y,
            best_energy=self.best_energy,
            best_step=self.best_step,
            energy_history=self.history,
            trajectory=self.trajectory,
            snapshots=self.snapshots,
            stopped_by=self.stopped_by,
            rules=tuple(r.name for r in rules),
            evaluations=self.steps + 1,
        )
