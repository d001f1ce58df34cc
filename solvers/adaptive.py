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
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction, describe
from irem.problem import Problem, SolveResult, Status, per_instance_sum, per_row, rows_of
from irem.solver import Solver
from irem.solvers.halting import GradNorm, HaltingRule, StepInfo
from irem.solvers.wrapper import WrapperSolver


class AdaptiveDescent(WrapperSolver):
    """Descend until every instance is stopped by one of `rules` or reaches `max_steps`.

    `min_steps`: no rule may stop an instance before this many steps. `compact_below`: drop the
    finished instances once the active ones are fewer than this fraction of the current batch
    (1.0: as soon as any stops; below 1 saves re-collating graph batches on every step, at the
    price of computing on a few finished instances whose updates are discarded meanwhile; 0 never
    compacts). A problem whose x cannot pick single instances (text: the positions of a window share
    one forward pass) is not compacted: its stopped instances stay in the batch, frozen by the mask.
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

    def _wrapped(self) -> Solver:
        descent = super()._wrapped()
        for method in ("propose", "energy_and_grad", "finite_instances", "prepare_input"):
            if not callable(getattr(descent, method, None)):
                raise TypeError(
                    f"AdaptiveDescent wraps solvers that expose single steps (GradientDescent); "
                    f"{type(descent).__name__} has no {method}()."
                )
        return descent

    def solve_inference(
        self,
        energy: EnergyFunction,
        x: Any,
        y0: Tensor,
        budget: int | None,
        *,
        segment: Tensor | None,
        record_history: bool,
        record_trajectory: bool,
        snapshots: Iterable[int],
        generator: torch.Generator | None,
    ) -> SolveResult:
        gd = self._wrapped()
        T = self.max_steps if budget is None else int(budget)
        if T < 0:
            raise ValueError(f"AdaptiveDescent: budget must be >= 0, got {T}.")
        wanted = sorted({int(s) for s in snapshots})
        if any(s < 0 or s > T for s in wanted):
            raise ValueError(f"AdaptiveDescent: snapshots {wanted} must lie in [0, budget={T}].")
        accept_if_lower = bool(getattr(gd, "accept_if_lower", False))
        shrink = float(getattr(gd, "shrink", 1.0))
        restart = bool(getattr(gd, "restart", False))
        need_norm = any(isinstance(r, GradNorm) for r in self.rules)

        with torch.no_grad():
            y = y0.detach()
            px = gd.prepare_input(energy, x, False)
            e, g = gd.energy_and_grad(energy, px, y, 0, need_grad=T > 0, create_graph=False)
            if e.dim() != 1:
                raise ValueError(
                    f"{describe(energy)} returned energies of shape {tuple(e.shape)}; a solver needs one per instance."
                )
            n, device = e.shape[0], e.device
            out = _Outputs(y, e, n, T, wanted, record_history, record_trajectory)
            idx = torch.arange(n, device=device)  # original ids of the instances still in the batch
            cur_x, cur_seg = x, segment
            lr = torch.ones(n, device=device, dtype=y.dtype)
            velocity = torch.zeros_like(y) if getattr(gd, "momentum", 0.0) else None
            steps = torch.zeros(n, dtype=torch.long, device=device)
            best_e = e.clone()
            best_y = y.clone()
            best_step = torch.zeros(n, dtype=torch.long, device=device)
            states = [r.start(n, device) for r in self.rules]
            live = torch.ones(n, dtype=torch.bool, device=device)  # not stopped (stopped rows await compaction)
            reason = torch.full((n,), _RUNNING, dtype=torch.long, device=device)  # or rule index, or _DIVERGED

            finite, all_finite = gd.finite_instances(e, g, cur_seg, n)
            if not all_finite:
                best_e = torch.where(finite, best_e, torch.full_like(best_e, math.inf))
                reason = torch.where(finite, reason, torch.full_like(reason, _DIVERGED))
                live = finite

            compact = self.compact_below
            for t in range(1, T + 1):
                m = idx.numel()
                if not bool(live.all()):
                    out.finish(~live, idx, cur_seg, segment, y, e, steps, reason, best_y, best_e, best_step)
                    if not bool(live.any()):
                        idx = idx[:0]  # all written: nothing left to finish
                        break
                    selected = None
                    if int(live.sum()) < compact * m:
                        keep = live.nonzero().squeeze(1)
                        selected = _select(cur_x, cur_seg, m, keep, idx)
                        if selected is None:
                            compact = 0.0  # x picks no single instances (text windows): stopped rows stay, masked
                    if selected is not None:
                        idx, rows, cur_x, cur_seg = selected
                        select = getattr(px, "select_instances", None)  # see EnergyFunction.prepare
                        px = select(keep) if callable(select) else gd.prepare_input(energy, cur_x, False)
                        y, g, best_y = y[rows], g[rows], best_y[rows]
                        velocity = None if velocity is None else velocity[rows]
                        e, lr, steps, best_e, best_step, reason = (
                            v[keep] for v in (e, lr, steps, best_e, best_step, reason)
                        )
                        states = [{k: v[keep] for k, v in s.items()} for s in states]
                        live = torch.ones(keep.numel(), dtype=torch.bool, device=device)
                        m = keep.numel()
                proposal = gd.propose(y, g, lr, cur_seg, m, generator, t=t, budget=T, velocity=velocity)
                e_new, g_new = gd.energy_and_grad(energy, px, proposal, t, need_grad=t < T, create_graph=False)
                finite, _ = gd.finite_instances(e_new, g_new, cur_seg, m)
                if accept_if_lower:
                    accept = live & finite & (e_new < e)
                    lr = torch.where(live & ~accept, lr * shrink, lr)
                else:
                    accept = live & finite
                    diverged = live & ~finite
                    reason = torch.where(diverged, torch.full_like(reason, _DIVERGED), reason)
                if velocity is not None:
                    velocity = gd.next_velocity(proposal, y, accept, False, cur_seg)
                rows_accept = per_row(accept, y, cur_seg)
                y = torch.where(rows_accept, proposal, y)
                if g_new is not None:
                    g = torch.where(rows_accept, g_new, g)
                if velocity is not None and restart and g_new is not None:
                    velocity = gd.restart_velocity(velocity, g, cur_seg, m)
                e_prev, e = e, torch.where(accept, e_new, e)
                steps = steps + live.long()
                better = live & (e < best_e)
                best_e = torch.where(better, e, best_e)
                best_y = torch.where(per_row(better, y, cur_seg), y, best_y)
                best_step = torch.where(better, torch.full_like(best_step, t), best_step)
                out.record(t, idx, live, e, y, cur_seg, segment)

                if t < T:
                    gnorm = per_instance_sum(g**2, cur_seg, m).sqrt() if need_norm else torch.full_like(e, math.nan)
                    # the step each instance would take next: shrunk by rejections, and by the schedule
                    step_now = lr * gd.step_size if hasattr(gd, "step_size") else lr
                    if callable(getattr(gd, "multiplier", None)):
                        step_now = step_now * gd.multiplier(t + 1, T)
                    info = StepInfo(
                        t=t, energy=e, previous_energy=e_prev, grad_norm=gnorm, step_size=step_now, accepted=accept
                    )
                    for i, rule in enumerate(self.rules):
                        done, states[i] = rule.update(states[i], info)
                        if t >= self.min_steps:
                            stop = live & done & (reason == _RUNNING)
                            reason = torch.where(stop, torch.full_like(reason, i), reason)
                    live = live & (reason == _RUNNING)
                else:
                    live = live & (reason != _DIVERGED)

            out.finish(
                torch.ones(idx.numel(), dtype=torch.bool, device=device),
                idx,
                cur_seg,
                segment,
                y,
                e,
                steps,
                reason,
                best_y,
                best_e,
                best_step,
            )
        return out.result(self.rules)


_RUNNING, _DIVERGED = -1, -2


def _select(
    x: Any, segment: Tensor | None, m: int, keep: Tensor, idx: Tensor
) -> tuple[Tensor, Tensor, Any, Tensor | None] | None:
    """Keep instances `keep` (local ids) of the active batch: their ids, answer rows, x, segment;
    None when x cannot pick them (text windows hold many instances; a tensor or a graph batch can)."""
    if segment is not None:
        rows, _ = rows_of(segment, keep, m)
        sub = Problem(x=x, segment=segment, num_instances=m).select(keep)
        return idx[keep], rows, sub.x, sub.segment
    try:
        sub_x = x[keep]
    except (TypeError, IndexError, KeyError):
        return None
    return idx[keep], keep, sub_x, None


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

    def record(
        self, t: int, idx: Tensor, live: Tensor, e: Tensor, y: Tensor, cur_seg: Tensor | None, segment: Tensor | None
    ) -> None:
        if self.history is not None:
            self.history[t, idx[live]] = e[live]
        if t in self.snapshots or self.trajectory is not None:
            local = live.nonzero().squeeze(1)
            src, dst = self._rows(local, idx, cur_seg, segment)
            if t in self.snapshots:
                self.snapshots[t][dst] = y[src]
            if self.trajectory is not None:
                full = (self.trajectory[-1]).clone()
                full[dst] = y[src]
                self.trajectory.append(full)

    def finish(
        self,
        which: Tensor,
        idx: Tensor,
        cur_seg: Tensor | None,
        segment: Tensor | None,
        y: Tensor,
        e: Tensor,
        steps: Tensor,
        reason: Tensor,
        best_y: Tensor,
        best_e: Tensor,
        best_step: Tensor,
    ) -> None:
        """Write instances `which` (a local mask) into the results; a no-op for rows written before."""
        local = which.nonzero().squeeze(1)
        if local.numel() == 0:
            return
        ids = idx[local]
        src, dst = self._rows(local, idx, cur_seg, segment)
        self.y[dst] = y[src]
        self.best_y[dst] = best_y[src]
        r = reason[local]
        diverged = r == _DIVERGED
        self.energy[ids] = torch.where(diverged, torch.full_like(e[local], math.nan), e[local])
        self.best_energy[ids] = torch.where(
            torch.isinf(best_e[local]), torch.full_like(best_e[local], math.nan), best_e[local]
        )
        self.best_step[ids] = best_step[local]
        self.steps[ids] = steps[local]
        status = torch.where(r >= 0, int(Status.CONVERGED), int(Status.MAX_STEPS))
        self.status[ids] = torch.where(diverged, int(Status.DIVERGED), status)
        self.stopped_by[ids] = torch.where(r >= 0, r, -1)
        for b, snap in self.snapshots.items():  # stopped before b: the final iterate stands for b
            early = steps[local] < b
            if bool(early.any()):
                s_src, s_dst = self._rows(local[early], idx, cur_seg, segment)
                snap[s_dst] = y[s_src]

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
        )
