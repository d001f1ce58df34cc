"""The descent loop, written once: budgets, snapshots, history, statuses, best iterates, halting, results.

A solve is a list of `Phase`s run one after another on the same instances: a plain descent is one
phase of `budget` steps; IRED's annealed descent is one phase per landscape (its own energy view,
a denoising jump as its first step); IRED's negatives are one short phase with a step per instance.
`descend` runs them and owns everything around the steps (solvers/step.py takes each one):

- the budget: each step knows whether it is the last (no gradient after it, no energy unless read),
  and which steps keep their graph in a differentiable solve (the backward mode, solvers/backward.py);
- per instance: the steps taken, the status (converged, max_steps, diverged; an instance that
  diverged stays diverged in later phases), the lowest-energy iterate, the energy evaluations;
- snapshots (the iterate after b steps, for several budgets in one solve), the energy history (NaN
  where an instance did not move) and the trajectory;
- with `Halting`: per-instance stopping rules (solvers/halting.py), and a batch that really shrinks
  as instances stop: the iterates, gradients, transform and rule state, the input and the energy's
  prepared input are indexed down to the unfinished instances, so compute falls with them. Stopped
  instances are written into the full-size `Records` (solvers/records.py) at once. Any sequence of
  phases can halt, an annealed one included.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction, select_prepared
from irem.problem import Problem, Status, can_select, per_instance_sum, rows_of, select_input
from irem.solver import SolveRequest
from irem.solvers.backward import BackwardMode, backward_mode, implicit_result
from irem.solvers.halting import GradNorm, HaltingRule, StepInfo
from irem.solvers.records import Records
from irem.solvers.state import DescentState
from irem.solvers.step import DescentStep


@dataclass
class Phase:
    """`steps` steps of `step` on `energy`; `first` takes the place of the first one (IRED's jump);
    `lr` is each instance's starting step multiplier (default 1); `landscape` is recorded per
    instance (the annealed solver's landscape index)."""

    energy: EnergyFunction
    step: DescentStep
    steps: int
    first: DescentStep | None = None
    lr: Tensor | None = None
    landscape: int | None = None


@dataclass
class Halting:
    """Per-instance stopping: `rules` (any one stops an instance, none before `min_steps`), and
    `compact_below`: drop the finished instances once the active ones are fewer than this fraction of
    the current batch (1: as soon as any stops; 0: never)."""

    rules: list[HaltingRule] = field(default_factory=list)
    min_steps: int = 1
    compact_below: float = 1.0


@dataclass
class _Batch:
    """The active batch and what follows its instances besides the descent state."""

    s: DescentState
    idx: Tensor | None  # original ids of its instances; None while it is the whole batch, in order
    x: Any
    px: Any
    per_instance: dict[str, Tensor]  # starts, landscape, stopped_by: one entry per instance of the batch
    rule_states: list[dict[str, Tensor]]

    def select(self, keep: Tensor, segment: Tensor | None, energy: EnergyFunction) -> bool:
        """Keep instances `keep` (local ids); False when the input cannot pick them yet."""
        m = self.s.n
        if not can_select(self.x, keep):
            return False
        if self.s.segment is not None:
            rows, _ = rows_of(self.s.segment, keep, m)
            sub = Problem(x=self.x, segment=self.s.segment, num_instances=m).select(keep)
            sub_x, sub_seg = sub.x, sub.segment
        else:
            rows, sub_x, sub_seg = keep, select_input(self.x, keep), None
        self.px = select_prepared(energy, self.px, sub_x, keep)
        self.x, self.s = sub_x, self.s.select(keep, rows, sub_seg)
        self.idx = self.idx[keep]
        self.per_instance = {k: v[keep] for k, v in self.per_instance.items()}
        self.rule_states = [{k: v[keep] for k, v in st.items()} for st in self.rule_states]
        return True


def descend(
    phases: list[Phase],
    x: Any,
    y0: Tensor,
    request: SolveRequest,
    *,
    budget: int,
    backward: BackwardMode | str = "last",
    halting: Halting | None = None,
    training: bool = False,
    report_step_size: bool = True,
    owner: str = "descend",
    prepared: bool = False,
) -> Any:
    """Run `phases` (their steps summing to `budget`) from `y0`; the `SolveResult` of every instance.
    `prepared`: x is already the energy's prepared input (a caller that evaluates the energy itself)."""
    backward = backward_mode(backward)
    T, wanted = int(budget), sorted(set(request.snapshots))
    if T < 0:
        raise ValueError(f"{owner}: budget must be >= 0, got {T}.")
    if any(b < 0 or b > T for b in wanted):
        raise ValueError(f"{owner}: snapshots {wanted} must lie in [0, budget={T}].")
    differentiable = request.differentiable
    graph = differentiable and not backward.implicit
    # the energy of the final iterate is only needed when someone reads it: evaluation, acceptance,
    # a recorded history; a training solve's plain descent skips that pass
    final_needed = not differentiable or request.record_history or any(p.step.decides_acceptance for p in phases)
    with nullcontext() if differentiable else torch.no_grad():
        with torch.enable_grad() if differentiable else nullcontext():
            px = x if prepared else phases[0].energy.prepare(x)  # what depends on x alone, once per solve
        y = y0 if differentiable else y0.detach()
        rec: Records | None = None
        b: _Batch | None = None
        done, finished = 0, False
        for p, phase in enumerate(phases):
            if finished:
                break
            last_phase = p == len(phases) - 1
            if b is None:
                s = phase.step.start(
                    phase.energy,
                    px,
                    y,
                    request.segment,
                    request.constraint,
                    need_grad=phase.steps > 0,
                    create_graph=graph and backward.graph_at(0, T),
                    training=training,
                    generator=request.generator,
                    lr=phase.lr,
                )
                rec = Records(s.y, s.n, wanted)
                per_instance = {"starts": torch.ones(s.n, dtype=torch.long, device=s.e.device)}
                if phase.landscape is not None:
                    per_instance["landscape"] = torch.full_like(per_instance["starts"], phase.landscape)
                rules = [] if halting is None else halting.rules
                if halting is not None:
                    per_instance["stopped_by"] = torch.full_like(per_instance["starts"], -1)
                idx = None if halting is None else torch.arange(s.n, device=s.e.device)
                b = _Batch(s, idx, x, px, per_instance, [r.start(s.n, s.e.device) for r in rules])
                _snapshot(rec, 0, b, request.segment, None)
            else:
                prev = b.s
                lr = phase.lr if phase.lr is None or b.idx is None else phase.lr[b.idx]
                s = phase.step.start(
                    phase.energy,
                    b.px,
                    prev.y.detach(),
                    prev.segment,
                    prev.constraint,
                    need_grad=phase.steps > 0,
                    create_graph=False,
                    training=training,
                    generator=request.generator,
                    lr=lr,
                )
                stopped = ~prev.active  # an instance that stopped in an earlier phase (diverged) stays put
                s.stop(stopped, Status.MAX_STEPS)
                s.status = torch.where(stopped, prev.status, s.status)  # with the status it stopped with
                s.steps = prev.steps  # steps count over the whole solve
                b.per_instance["starts"] = b.per_instance["starts"] + 1
                if phase.landscape is not None:
                    landscape = b.per_instance["landscape"]
                    b.per_instance["landscape"] = torch.where(
                        stopped, landscape, torch.full_like(landscape, phase.landscape)
                    )
                b.s = s
            _history(rec, request, b.s.e, None, b.idx)
            for i in range(1, phase.steps + 1):
                if halting is not None:
                    if not _finish_stopped(rec, b, halting, request, phase.energy, report_step_size, phase.step):
                        finished = True
                        break
                elif not b.s.any_active():
                    break
                step = phase.first if (i == 1 and phase.first is not None) else phase.step
                t = done + 1
                last = last_phase and i == phase.steps
                before = b.s.steps
                step.step(
                    b.s,
                    phase.energy,
                    b.px,
                    i,
                    phase.steps,
                    request.generator,
                    need_grad=not last,
                    create_graph=graph and backward.graph_at(t, T),
                    evaluate=not last or final_needed,
                    training=training,
                )
                done = t
                moving = b.s.steps > before
                _history(rec, request, b.s.e, moving, b.idx)
                _trajectory(rec, request, b, moving, request.segment)
                if t in wanted:
                    _snapshot(rec, t, b, request.segment, moving)
                if halting is not None and t < T:
                    _apply_rules(b, halting, request, step, t, i, phase.steps)
            if halting is not None and not last_phase and not finished:  # the next phase starts on new ground:
                finished = not _finish_stopped(  # write and drop the instances that stopped in this one
                    rec, b, Halting(compact_below=1.0), request, phase.energy, report_step_size, phase.step
                )
        if not finished:
            _finish(
                rec,
                b,
                torch.ones(b.s.n, dtype=torch.bool, device=b.s.e.device),
                request,
                final_needed,
                report_step_size,
                phases[-1].step,
            )
        if halting is not None:
            rec.rules = tuple(r.name for r in halting.rules)
        if rec.history is not None:  # a solve that ended early (every instance stopped): NaN rows to the budget
            rows = T + sum(1 for p in phases if p.steps > 0 or p is phases[-1])
            missing = rows - rec.history.shape[0]
            if missing > 0:
                rec.history = torch.cat([rec.history, rec.history.new_full((missing, rec.n), math.nan)])
    if differentiable and backward.implicit:
        rec.rows["y"] = implicit_result(
            phases[-1].energy, px, rec.rows["y"], T, request.constraint, request.segment, b.s.n, backward
        )
    return rec.result()


# -- recording -----------------------------------------------------------------------------------------


def _rows(b: _Batch, local: Tensor, segment: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
    """Answer rows of local instances `local`: in the active batch, and in the full results."""
    if segment is None:
        return local, b.idx[local]
    return rows_of(b.s.segment, local, b.s.n)[0], rows_of(segment, b.idx[local], n)[0]


def _history(rec: Records, request: SolveRequest, e: Tensor, moving: Tensor | None, idx: Tensor | None) -> None:
    """One row of the energy history: each instance's energy, NaN where it did not move."""
    if not request.record_history:
        return
    e = e.detach()
    if idx is None and (moving is None or bool(moving.all())):
        row = e
    elif idx is None:
        row = torch.where(moving, e, torch.full_like(e, math.nan))
    else:
        row = torch.full((rec.n,), math.nan, device=e.device, dtype=e.dtype)
        keep = torch.ones_like(e, dtype=torch.bool) if moving is None else moving
        row[idx[keep]] = e[keep]
    rec.history = row.unsqueeze(0) if rec.history is None else torch.cat([rec.history, row.unsqueeze(0)])


def _trajectory(rec: Records, request: SolveRequest, b: _Batch, moving: Tensor, segment: Tensor | None) -> None:
    if not request.record_trajectory:
        return
    if rec.trajectory is None:
        rec.trajectory = [rec.start]
    if b.idx is None:  # the whole batch: the iterate itself, with its graph in a training solve
        rec.trajectory.append(b.s.y)
        return
    full = rec.trajectory[-1].detach().clone()
    src, dst = _rows(b, moving.nonzero().squeeze(1), segment, rec.n)
    full[dst] = b.s.y[src].detach()
    rec.trajectory.append(full)


def _snapshot(rec: Records, t: int, b: _Batch, segment: Tensor | None, moving: Tensor | None) -> None:
    """The iterate after t steps (instances that stopped hold their final one)."""
    if t not in rec.snapshots:
        return
    if b.idx is None or moving is None and b.s.n == rec.n:
        rec.set_rows(f"snap{t}", b.s.y.detach())
        return
    src, dst = _rows(b, moving.nonzero().squeeze(1), segment, rec.n)
    rec.put_rows(f"snap{t}", dst, b.s.y[src])


def _finish(
    rec: Records,
    b: _Batch,
    which: Tensor,
    request: SolveRequest,
    final_needed: bool,
    report_step_size: bool,
    step: DescentStep,
) -> None:
    """Write instances `which` (a local mask) of the active batch into the records."""
    s = b.s
    e = s.e if final_needed else torch.full_like(s.e, math.nan)
    diverged = s.status == int(Status.DIVERGED)
    energy = torch.where(diverged, torch.full_like(e, math.nan), e).detach()
    fields = {
        "energy": energy,
        "best_energy": s.reported_best_energy(),
        "best_step": s.best_step,
        "steps": s.steps,
        "status": s.status,
        "evaluations": s.steps + b.per_instance["starts"],
        **{k: v for k, v in b.per_instance.items() if k != "starts"},
    }
    if report_step_size:
        fields["step_size"] = (s.lr * step.step_size).detach()
    if b.idx is None:  # the whole batch at once: taken as it is (a training solve keeps its graph)
        rec.set_rows("y", s.y)
        rec.set_rows("best_y", s.handed_out_best_y())
        for key, value in fields.items():
            rec.set(key, value)
        for t in rec.snapshots:
            if f"snap{t}" not in rec.rows:  # not reached: every instance had stopped before it
                rec.set_rows(f"snap{t}", s.y.detach())
        return
    local = which.nonzero().squeeze(1)
    if local.numel() == 0:
        return
    ids = b.idx[local]
    src, dst = _rows(b, local, request.segment, rec.n)
    rec.put_rows("y", dst, s.y[src])
    rec.put_rows("best_y", dst, s.best_y[src])
    for key, value in fields.items():
        rec.put(key, ids, value[local])
    steps = s.steps[local]
    for t in rec.snapshots:  # stopped before t: the final iterate stands for t
        early = steps < t
        if bool(early.any()):
            e_src, e_dst = _rows(b, local[early], request.segment, rec.n)
            rec.put_rows(f"snap{t}", e_dst, s.y[e_src])


def _finish_stopped(
    rec: Records,
    b: _Batch,
    halting: Halting,
    request: SolveRequest,
    energy: EnergyFunction,
    report_step_size: bool,
    step: DescentStep,
) -> bool:
    """Before a step of a halting solve: write the instances that stopped, and drop them from the batch
    when few enough are left; False once no instance is left."""
    s = b.s
    if s.all_active:
        return True
    _finish(rec, b, ~s.active, request, True, report_step_size, step)
    active = int(s.active.sum())
    if active == 0:
        return False
    if active < halting.compact_below * s.n:
        b.select(s.active.nonzero().squeeze(1), request.segment, energy)
    return True


def _apply_rules(
    b: _Batch, halting: Halting, request: SolveRequest, step: DescentStep, t: int, i: int, steps: int
) -> None:
    """After step t: each rule's verdict on each active instance; the first rule that fires stops it."""
    s = b.s
    need_norm = any(isinstance(r, GradNorm) for r in halting.rules)
    need_verdict = any(r.needs_verifier for r in halting.rules)
    gnorm = per_instance_sum(s.g**2, s.segment, s.n).sqrt() if need_norm else torch.full_like(s.e, math.nan)
    info = StepInfo(
        t=t,
        energy=s.e,
        previous_energy=s.previous_energy,
        grad_norm=gnorm,
        step_size=step.step_sizes(s.lr, i + 1, steps),  # shrunk by rejections, and by the schedule
        accepted=s.accepted,
        verified=request.verify(b.idx, s.y).to(s.active.device) if need_verdict else None,
    )
    stop = torch.zeros_like(s.active)
    stopped_by = b.per_instance["stopped_by"]
    for k, rule in enumerate(halting.rules):
        fired_rule, b.rule_states[k] = rule.update(b.rule_states[k], info)
        if t >= halting.min_steps:
            fired = s.active & fired_rule & ~stop
            stopped_by = torch.where(fired, torch.full_like(stopped_by, k), stopped_by)
            stop = stop | fired
    b.per_instance["stopped_by"] = stopped_by
    s.stop(stop, Status.CONVERGED)
