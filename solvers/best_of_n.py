"""Best-of-N: descend from several starts per instance and keep the answer the energy likes best.

The energy is its own verifier: two descents that end in different basins are compared by the
energy they reach, and the lower one is kept ("self-verification" in the IREM and EBT papers).
`BestOfN` wraps any descent solver (GradientDescent, or AdaptiveDescent around one). All starts
run as one batched solve: the problem is repeated start by start (dense x by indexing, graph
batches by `Problem.select`), so N starts cost N times the compute of one but no Python loop
over starts or instances. The result is per original instance, as if one solver had run.

Divergence is treated as a failed attempt, not as an answer: an instance whose every start
diverged can be rerun (`restarts`) with the wrapped solver's step size shrunk, and the reruns
join the pool of candidates it picks from.

Training never picks: a differentiable solve (the IREM loss) is handed to the wrapped solver
unchanged. With `descent=None` the solver wraps whatever solver the trained model already has
(`with_base`), which is how `irem-eval solver=best_of_n` keeps the model's trained step size.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import Problem, SolveResult, Status, instance_count, rows_of, select_input
from irem.solver import Solver, SolveRequest, StartSampler
from irem.solvers.records import Records
from irem.solvers.wrapper import WrapperSolver

INITS = ("task", "uniform", "perturb")
PICKS = ("best", "final")


class BestOfN(WrapperSolver):
    """Run `descent` from `starts` starts per instance; keep each instance's lowest-energy answer.

    Start 0 is always the given y0, so `starts=1` is the wrapped solver itself and more starts
    can only lower the picked energy. Further starts are `init="task"`: fresh draws of the task's
    own start (`Task.init_answer`, handed to `solve` as `init` by the energy model), `"uniform"`:
    U(-scale, scale) in y0's shape, or `"perturb"`: y0 + scale * N(0, 1) (local search around a
    given start, e.g. a warm start). `pick="best"` compares each start's
    lowest-energy iterate, `"final"` its last one (the answer a fixed budget would give).

    `restarts`: an instance whose every start diverged is run again from new starts (start 0
    again y0) with the wrapped step size times `restart_shrink` (times it again on each further
    restart), at most `restarts` times; a learnable step is restored afterwards, bit for bit.
    `verified`: the task's verifier (handed to `solve` as `verify`) judges every start; a verified
    answer beats any unverified one, and restarts (at the same step size) go to every instance not
    yet verified. Its
    results use the ground-truth check and are reported apart from energy-picked ones.

    Records, per original instance: `y`/`energy` the picked answer and its energy; `steps` the
    steps of every start and restart of the instance together (what the answer cost); `status`,
    `best_*`, `energy_history`, `trajectory`, `step_size` and `stopped_by` those of the start that
    won; `start_index` which start won (r * starts + k for start k of restart r). Snapshots carry
    no energy, so the snapshot at every budget is the winning start's, chosen at the final pick,
    not the best start at that budget.
    """

    config_name = "best_of_n"

    def __init__(
        self,
        descent: Solver | None = None,
        starts: int = 4,
        init: str = "task",
        scale: float = 1.0,
        pick: str = "best",
        restarts: int = 0,
        restart_shrink: float = 0.5,
        max_steps: int | None = None,
        verified: bool = False,
    ) -> None:
        super().__init__(descent)
        if int(starts) != starts or starts < 1:
            raise ValueError(f"BestOfN: starts must be a positive integer, got {starts}.")
        if init not in INITS:
            raise ValueError(f"Unknown init '{init}'. Valid choices: {', '.join(INITS)}.")
        if pick not in PICKS:
            raise ValueError(f"Unknown pick '{pick}'. Valid choices: {', '.join(PICKS)}.")
        if not scale > 0:
            raise ValueError(f"BestOfN: scale must be positive, got {scale}.")
        if int(restarts) != restarts or restarts < 0:
            raise ValueError(f"BestOfN: restarts must be an integer >= 0, got {restarts}.")
        if not 0 < restart_shrink < 1:
            raise ValueError(f"BestOfN: restart_shrink must be in (0, 1), got {restart_shrink}.")
        if max_steps is not None and max_steps < 0:
            raise ValueError(f"BestOfN: max_steps must be >= 0 or None (the wrapped solver's), got {max_steps}.")
        self.starts = int(starts)
        self.init = init
        self.scale = float(scale)
        self.pick = pick
        self.restarts = int(restarts)
        self.restart_shrink = float(restart_shrink)
        self._max_steps = None if max_steps is None else int(max_steps)
        self.verified = bool(verified)

    @property
    def max_steps(self) -> int | None:  # type: ignore[override]
        """The budget per start when none is given: set explicitly, else the wrapped solver's."""
        if self._max_steps is not None:
            return self._max_steps
        return None if self.descent is None else self.descent.max_steps

    @property
    def snapshots_match_budgets(self) -> bool:
        """Whether the snapshot after b steps equals a b-step solve. Not with several starts: a b-step
        solve may pick another start than the longer solve whose winner's snapshot is reported."""
        return self.starts == 1 and (self.descent is None or self.descent.snapshots_match_budgets)

    def run_inference(
        self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest
    ) -> SolveResult:
        segment, constraint, init = request.segment, request.constraint, request.init
        solver = self._wrapped()
        if self.init == "task" and init is None and self.starts > 1:
            raise ValueError(
                "BestOfN(init='task') draws its extra starts from the task's own start, which this solve was not "
                "given (init=...: an energy model's predict passes Task.init_answer); pass it, or use "
                "init='uniform' or 'perturb'."
            )
        if self.verified and request.verify is None:
            raise ValueError(
                "BestOfN(verified=True) needs the task's verifier, which this solve was not given (verify=...: an "
                "energy model's predict passes Task.check)."
            )
        T = self.max_steps if budget is None else int(budget)
        wanted = sorted(set(request.snapshots))
        n = instance_count(x, y0, segment)
        y0 = y0.detach()
        pool: _Pool | None = None
        todo = torch.arange(n, device=y0.device)
        for r in range(self.restarts + 1):
            whole = r == 0 and self.starts == 1  # nothing to repeat: hand over the problem unchanged
            if whole:
                sub_x, sub_seg, starts, sub_constraint = x, segment, y0, constraint
                rows = torch.arange(y0.shape[0], device=y0.device)
                local_seg = todo if segment is None else segment
            else:
                sub_x, sub_seg, rows, local_seg = _repeat(x, segment, n, todo, self.starts)
                starts = self._starts(y0, rows, todo, request.generator, init)
                sub_constraint = None if constraint is None else constraint.rows(rows.repeat(self.starts))
            shrink = r > 0 and not self.verified  # a diverged instance restarts with a smaller step
            with solver.scaled_step(self.restart_shrink**r) if shrink else nullcontext():
                sub = replace(request, segment=sub_seg, constraint=sub_constraint, snapshots=tuple(wanted))
                res = solver.run(energy, sub_x, starts, T, sub)
            if pool is None:
                pool = _Pool(res, y0, n, T, self.pick, wanted)
            verdicts = None
            if self.verified:
                answers = res.best_y if self.pick == "best" else res.y
                verdicts = request.verify(todo.repeat(self.starts), answers.detach()).to(todo.device)
            pool.merge(res, todo, rows, local_seg, self.starts, r * self.starts, verdicts)
            if r == self.restarts:
                break
            if self.verified:  # restart every instance whose pick the verifier rejects
                again = ~pool.ok[todo]
            else:  # restart an instance only when every start of it diverged
                again = (res.status == int(Status.DIVERGED)).view(self.starts, -1).all(0)
            if not bool(again.any()):
                break
            todo = todo[again]
        return pool.result()

    def _starts(
        self, y0: Tensor, rows: Tensor, ids: Tensor, generator: torch.Generator | None, init: StartSampler | None
    ) -> Tensor:
        """The starts of instances `ids`, whose answer rows are `rows`, start-major: [starts * len(rows)]."""
        mine = y0[rows]
        if self.starts == 1:
            return mine
        if self.init == "task":
            more = [init(ids).to(device=y0.device, dtype=y0.dtype) for _ in range(self.starts - 1)]
            return torch.cat([mine, *more])
        shape = (self.starts - 1, *mine.shape)
        gen_device = generator.device if generator is not None else y0.device
        if self.init == "uniform":
            draw = torch.rand(shape, generator=generator, device=gen_device, dtype=y0.dtype) * 2 - 1
            more = self.scale * draw.to(y0.device)
        else:
            draw = torch.randn(shape, generator=generator, device=gen_device, dtype=y0.dtype)
            more = mine.unsqueeze(0) + self.scale * draw.to(y0.device)
        return torch.cat([mine.unsqueeze(0), more]).flatten(0, 1)


def _repeat(x: Any, segment: Tensor | None, n: int, ids: Tensor, k: int) -> tuple[Any, Tensor | None, Tensor, Tensor]:
    """Instances `ids` repeated `k` times, start-major: their x, segment, original answer rows, and
    the instance (0..len(ids)-1) of each of those rows."""
    index = ids.repeat(k)
    if segment is not None:
        rows, local_seg = rows_of(segment, ids, n)
        sub = Problem(x=x, segment=segment, num_instances=n).select(index)
        return sub.x, sub.segment, rows, local_seg
    return select_input(x, index), None, ids, torch.arange(ids.numel(), device=ids.device)


class _Pool:
    """Each instance's best candidate so far, over the starts of every round, written into `Records`."""

    KEPT = ("energy", "status", "best_energy", "best_step", "step_size", "stopped_by", "landscape")

    def __init__(self, like: SolveResult, y0: Tensor, n: int, T: int, pick: str, wanted: list[int]) -> None:
        device = y0.device
        self.n, self.pick, self.wanted = n, pick, wanted
        self.records = Records(y0, n, wanted)
        self.records.rules = like.rules
        self.score = torch.full((n,), math.inf, device=device, dtype=like.energy.dtype)
        self.filled = torch.zeros(n, dtype=torch.bool, device=device)
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        self.evaluations = torch.zeros(n, dtype=torch.long, device=device)
        self.ok = torch.zeros(n, dtype=torch.bool, device=device)  # the pick passed the verifier (verified=True)
        self.start_index = torch.zeros(n, dtype=torch.long, device=device)
        # a solver may end its history early (every instance stopped): rounds differ in length
        self.length = 0
        self.history = None
        if like.energy_history is not None:
            self.history = like.energy_history.new_full((T + 1, n), math.nan)
        self.trajectory = None if like.trajectory is None else [y0.clone() for _ in range(T + 1)]

    def merge(
        self,
        res: SolveResult,
        ids: Tensor,
        rows: Tensor,
        local_seg: Tensor,
        k: int,
        first: int,
        verdicts: Tensor | None = None,
    ) -> None:
        """Fold in one round: `k` starts (start-major) of instances `ids`, numbered from `first`;
        answer row q of the round's batch is original row rows[q % len(rows)], of local instance
        local_seg[q % len(rows)]. With `verdicts` (per start: the verifier accepts it) a verified
        start beats any unverified one, and energy decides among equals."""
        m = ids.numel()
        energy = res.best_energy if self.pick == "best" else res.energy
        score = torch.nan_to_num(energy.detach().view(k, m), nan=math.inf)
        round_score, winner = score.min(0)  # ties: the lower start
        round_ok = torch.zeros_like(self.ok[ids])
        if verdicts is not None:
            ok = verdicts.view(k, m)
            round_ok = ok.any(0)
            winner = torch.where(round_ok, torch.where(ok, score, torch.full_like(score, math.inf)).argmin(0), winner)
            round_score = score.gather(0, winner.unsqueeze(0)).squeeze(0)
        self.steps[ids] += res.steps.view(k, m).sum(0)
        self.evaluations[ids] += res.evaluations.view(k, m).sum(0)
        # strictly better wins, so an earlier round keeps ties; an instance seen for the first time
        # takes its winner even when every start ended without a finite energy
        old_ok = self.ok[ids]
        better = (round_ok & ~old_ok) | ((round_ok == old_ok) & (round_score < self.score[ids])) | ~self.filled[ids]
        if not bool(better.any()):
            return
        won, ids_b = winner[better], ids[better]
        self.filled[ids_b] = True
        self.ok[ids_b] = round_ok[better]
        self.score[ids_b] = round_score[better]
        self.start_index[ids_b] = first + won
        src = won * m + better.nonzero().squeeze(1)  # the winning start's entry in the round's batch
        for key in self.KEPT:
            value = getattr(res, key)
            if value is not None:
                self.records.put(key, ids_b, value[src])
        if self.history is not None:
            hist = res.energy_history.detach()
            self.length = max(self.length, hist.shape[0])
            self.history[: hist.shape[0], ids_b] = hist[:, src]
        q = better[local_seg].nonzero().squeeze(1)
        src_rows = winner[local_seg[q]] * rows.numel() + q
        dst_rows = rows[q]
        answers = {"y": res.y, "best_y": res.best_y, **{f"snap{b}": res.snapshots[b] for b in self.wanted}}
        for key, value in answers.items():
            self.records.put_rows(key, dst_rows, value[src_rows])
        if self.trajectory is not None:
            self.length = max(self.length, len(res.trajectory))
            for t, store in enumerate(self.trajectory):  # a round that ended early stays at its last iterate
                store[dst_rows] = res.trajectory[min(t, len(res.trajectory) - 1)].detach()[src_rows]

    def result(self) -> SolveResult:
        rec = self.records
        if self.pick == "best":  # the answer is each start's lowest-energy iterate, and its energy
            rec.set_rows("y", rec.rows["best_y"].clone())
            rec.set("energy", rec.inst["best_energy"].clone())
        rec.set("steps", self.steps)
        rec.set("evaluations", self.evaluations)
        rec.set("start_index", self.start_index)
        rec.history = None if self.history is None else self.history[: self.length]
        rec.trajectory = None if self.trajectory is None else self.trajectory[: self.length]
        return rec.result()
