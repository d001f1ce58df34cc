"""Containers that flow between tasks, energies and solvers.

`Problem` is a batch of instances; `SolveResult` is what a solver hands back, with per-instance
bookkeeping in the style of theseus' NonlinearOptimizerInfo. Both know about `segment`, the
instance id of each row of a variable-size answer (graph edges), so per-instance reductions work
the same for a 20x20 matrix and for a batch of graphs of different sizes.

A problem's input `x` is a tensor (one row per instance) or an object of the task's own input type
that follows `InstanceInput`: the core picks, repeats, joins and moves instances only through that
protocol, so it never needs to know what the input is. `AnswerConstraint` holds what a problem
allows its answers (entries fixed to given values, a projection); the descent step applies it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


class Status(enum.IntEnum):
    """Why an instance stopped descending."""

    CONVERGED = 0
    MAX_STEPS = 1
    DIVERGED = 2


def _move(value: Any, device: torch.device | str) -> Any:
    return value.to(device) if hasattr(value, "to") else value


@runtime_checkable
class InstanceInput(Protocol):
    """What a problem input that is not a tensor implements (a graph batch, token windows).

    `num_instances` counts its instances; `select_instances(index)` is the input of instances
    `index` in that order (repeats allowed: best-of-N repeats a batch start by start);
    `can_select(index)` says whether that selection exists (the positions of a text window share one
    forward pass, so single positions cannot be picked); `cat_instances(inputs)` joins inputs of
    the same type; `to(device)` moves it.
    """

    @property
    def num_instances(self) -> int: ...

    def select_instances(self, index: Tensor) -> InstanceInput: ...

    def can_select(self, index: Tensor) -> bool: ...

    def cat_instances(self, others: Sequence[InstanceInput]) -> InstanceInput: ...

    def to(self, device: torch.device | str) -> InstanceInput: ...


@runtime_checkable
class ContinuousInput(Protocol):
    """An input with continuous values a descent may also move (graph batches: the edge values).

    Objectives that differentiate in x (input stationarity) and compositions that feed an inner
    answer into an outer input use it; a tensor input is its own values.
    """

    def input_values(self) -> Tensor: ...

    def with_input_values(self, values: Tensor) -> ContinuousInput: ...


def input_values(x: Any) -> Tensor:
    """The continuous values of an input: a tensor itself, or what a `ContinuousInput` exposes."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, ContinuousInput):
        return x.input_values()
    raise TypeError(f"an input of type {type(x).__name__} has no continuous values (see irem.problem.ContinuousInput).")


def with_input_values(x: Any, values: Tensor) -> Any:
    """The same input with other continuous values (shared structure), the inverse of `input_values`."""
    if isinstance(x, Tensor):
        return values
    if isinstance(x, ContinuousInput):
        return x.with_input_values(values)
    raise TypeError(f"an input of type {type(x).__name__} has no continuous values (see irem.problem.ContinuousInput).")


def can_select(x: Any, index: Tensor) -> bool:
    """Whether instances `index` of input `x` can be picked (a tensor always can)."""
    if isinstance(x, Tensor):
        return True
    return isinstance(x, InstanceInput) and x.can_select(index)


def select_input(x: Any, index: Tensor) -> Any:
    """Instances `index` of an input: rows of a tensor, or the input type's own selection."""
    if isinstance(x, Tensor):
        return x[index]
    if not isinstance(x, InstanceInput):
        raise TypeError(
            f"an input of type {type(x).__name__} cannot pick instances: give a tensor with one row per "
            "instance, or an input type that implements irem.problem.InstanceInput."
        )
    if not x.can_select(index):
        raise ValueError(f"{type(x).__name__} cannot pick these instances (see its can_select).")
    return x.select_instances(index)


def instance_count(x: Any, y: Tensor, segment: Tensor | None) -> int:
    """How many instances a solve's (x, y, segment) holds.

    An input that counts its instances is believed first: with a segment, instances whose answer
    has no rows (a one-node graph has no node pairs) would be missed by counting segment ids.
    """
    if isinstance(x, InstanceInput):
        return int(x.num_instances)
    if segment is None:
        return int(y.shape[0])
    return int(segment.max().item()) + 1 if segment.numel() else 0


@dataclass(frozen=True)
class AnswerConstraint:
    """What a problem allows its answers: entries fixed to given values, and a projection.

    `mask` (bool, the answer's shape) marks the fixed entries and `values` (the answer's shape)
    holds what they are fixed to; only entries under the mask are read. `project` maps an answer
    onto the allowed set (a box, a simplex per row); it must act row by row, so a sub-batch is
    projected as it would be inside the whole batch. The descent step (solvers/step.py) applies
    both to the start and after every step, so every solver honours them and fixed entries stay
    bit-identical; the gradient at fixed entries is zeroed, so norms and halting rules see the
    free entries only.
    """

    mask: Tensor | None = None
    values: Tensor | None = None
    project: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if (self.mask is None) != (self.values is None):
            raise ValueError("AnswerConstraint: give mask and values together (the fixed entries and their values).")
        if self.mask is not None:
            if self.mask.dtype != torch.bool:
                raise ValueError(f"AnswerConstraint: mask must be a bool tensor, got dtype {self.mask.dtype}.")
            if self.mask.shape != self.values.shape:
                raise ValueError(
                    f"AnswerConstraint: mask {tuple(self.mask.shape)} and values {tuple(self.values.shape)} "
                    "must have the answer's shape."
                )

    def apply(self, y: Tensor) -> Tensor:
        """`y` projected, then with its fixed entries set (last, so they are exact)."""
        if self.project is not None:
            y = self.project(y)
        if self.mask is not None:
            if self.mask.shape != y.shape:
                raise ValueError(
                    f"AnswerConstraint: the answer has shape {tuple(y.shape)}, the fixed-entry mask "
                    f"{tuple(self.mask.shape)}; they must match."
                )
            y = torch.where(self.mask, self.values.to(y.dtype), y)
        return y

    def free_gradient(self, g: Tensor) -> Tensor:
        """The gradient with fixed entries zeroed (they never move)."""
        return g if self.mask is None else g.masked_fill(self.mask, 0)

    def rows(self, index: Tensor) -> AnswerConstraint:
        """The constraint of answer rows `index` (a sub-batch, or a repeated one)."""
        if self.mask is None:
            return self
        return replace(self, mask=self.mask[index], values=self.values[index])

    def to(self, device: torch.device | str) -> AnswerConstraint:
        if self.mask is None:
            return self
        return replace(self, mask=self.mask.to(device), values=self.values.to(device))

    @staticmethod
    def cat(constraints: Sequence[AnswerConstraint | None]) -> AnswerConstraint | None:
        """Join the constraints of consecutive sub-batches (all None, or all with the same projection)."""
        if all(c is None for c in constraints):
            return None
        if any(c is None for c in constraints) or len({id(c.project) for c in constraints}) > 1:
            raise ValueError("Problem.cat: the problems joined must all have the same kind of answer constraint.")
        first = constraints[0]
        if first.mask is None:
            return first
        return replace(
            first, mask=torch.cat([c.mask for c in constraints]), values=torch.cat([c.values for c in constraints])
        )


@dataclass(frozen=True)
class Box:
    """A projection onto [low, high] entry by entry (IRED's clamp of a landscape's iterate)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"Box: need low <= high, got [{self.low}, {self.high}].")

    def __call__(self, y: Tensor) -> Tensor:
        return y.clamp(self.low, self.high)


def simplex_projection(y: Tensor) -> Tensor:
    """The Euclidean projection of each row of `y` (its last dimension) onto the probability simplex
    (entries >= 0 summing to 1), by the sort-based algorithm (Duchi et al. 2008); loop-free."""
    u = torch.sort(y, dim=-1, descending=True).values
    css = u.cumsum(dim=-1) - 1
    k = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype)
    rho = ((u - css / k) > 0).sum(dim=-1, keepdim=True).clamp_min(1)
    theta = css.gather(-1, rho - 1) / rho.to(y.dtype)
    return (y - theta).clamp_min(0)


@dataclass
class Problem:
    """A batch of `num_instances` problems.

    `x` is whatever the energy consumes: a tensor with one row per instance, or an input type
    that follows `InstanceInput` (a graph batch, token windows). `target` is the ground-truth
    answer in the same layout as a candidate `y`, or None at inference. `segment` maps each row of
    `y` to its instance when instances have different answer sizes; it is None when row i of `y`
    is instance i. `difficulty` is a per-instance scalar (input scale, condition number, graph
    size) that studies cut results by. `constraint` is what the problem allows its answers
    (fixed entries, a projection), applied by every solver.
    """

    x: Any
    target: Tensor | None = None
    segment: Tensor | None = None
    difficulty: Tensor | None = None
    num_instances: int = -1
    info: dict[str, Any] = field(default_factory=dict)
    constraint: AnswerConstraint | None = None

    def __post_init__(self) -> None:
        if self.num_instances < 0:
            if isinstance(self.x, InstanceInput):
                self.num_instances = int(self.x.num_instances)
            elif self.segment is not None:
                self.num_instances = int(self.segment.max().item()) + 1 if self.segment.numel() else 0
            elif isinstance(self.x, Tensor):
                self.num_instances = self.x.shape[0]
            elif self.target is not None:
                self.num_instances = self.target.shape[0]
            else:
                raise ValueError(
                    "Problem: cannot infer num_instances from x of type "
                    f"{type(self.x).__name__}; pass num_instances explicitly."
                )

    def __len__(self) -> int:
        return self.num_instances

    @property
    def device(self) -> torch.device:
        """Where the problem lives, so answers can be started on the same device."""
        for v in (self.x, self.target, self.segment):
            if getattr(v, "device", None) is not None:
                return torch.device(v.device)
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> Problem:
        return replace(
            self,
            x=_move(self.x, device),
            target=_move(self.target, device),
            segment=_move(self.segment, device),
            difficulty=_move(self.difficulty, device),
            info={k: _move(v, device) for k, v in self.info.items()},
            constraint=None if self.constraint is None else self.constraint.to(device),
        )

    def select(self, index: Tensor) -> Problem:
        """The sub-batch of instances `index`, in that order (repeats allowed).

        Per-instance tensors are indexed; x picks its instances through `select_input`; with a
        `segment`, answer rows are regathered instance by instance and the segment renumbered.
        """
        if self.segment is not None:
            return self._select_segments(index)
        if not can_select(self.x, index):
            raise NotImplementedError(
                f"Problem.select: x of type {type(self.x).__name__} cannot pick these instances; a tensor x or "
                "an input that implements irem.problem.InstanceInput can."
            )

        def pick(v: Any) -> Any:
            return v[index] if isinstance(v, Tensor) and v.shape[:1] == (self.num_instances,) else v

        return Problem(
            x=select_input(self.x, index),
            target=None if self.target is None else self.target[index],
            difficulty=None if self.difficulty is None else self.difficulty[index],
            num_instances=int(torch.as_tensor(index).numel()),
            info={k: pick(v) for k, v in self.info.items()},
            constraint=None if self.constraint is None else self.constraint.rows(index),
        )

    def _select_segments(self, index: Tensor) -> Problem:
        if not isinstance(self.x, InstanceInput):
            raise NotImplementedError(
                "Problem.select: a problem with a segment needs an x that picks its own instances "
                f"(irem.problem.InstanceInput); got x of type {type(self.x).__name__}."
            )
        index = torch.as_tensor(index, dtype=torch.long, device=self.segment.device).flatten()
        n_rows = self.segment.shape[0]
        rows, segment = rows_of(self.segment, index, self.num_instances)

        def pick(v: Any) -> Any:
            if isinstance(v, Tensor) and v.shape[:1] == (self.num_instances,):
                return v[index]
            if isinstance(v, Tensor) and v.shape[:1] == (n_rows,):
                return v[rows]
            return v

        return Problem(
            x=select_input(self.x, index),
            target=None if self.target is None else self.target[rows],
            segment=segment,
            difficulty=None if self.difficulty is None else self.difficulty[index],
            num_instances=int(index.numel()),
            info={k: pick(v) for k, v in self.info.items()},
            constraint=None if self.constraint is None else self.constraint.rows(rows),
        )

    @staticmethod
    def cat(problems: list[Problem]) -> Problem:
        """Concatenate problems along the instance dimension (tensor inputs, or inputs that join
        through `InstanceInput.cat_instances`; segments are renumbered)."""
        first = problems[0]

        def join(values: list[Any]) -> Any:
            if any(v is None for v in values):
                return None
            return torch.cat(values)

        xs = [p.x for p in problems]
        if first.segment is not None and not isinstance(first.x, InstanceInput):
            raise NotImplementedError(
                "Problem.cat: a problem with a segment needs an x that joins its own instances "
                f"(irem.problem.InstanceInput); got x of type {type(first.x).__name__}."
            )
        if all(isinstance(x, Tensor) for x in xs):
            x = torch.cat(xs)
        elif isinstance(first.x, InstanceInput):
            x = first.x.cat_instances(xs[1:])
        else:
            raise NotImplementedError(
                f"Problem.cat: x of type {type(first.x).__name__} cannot be joined; a tensor x or an input that "
                "implements irem.problem.InstanceInput can."
            )
        segment = None
        if first.segment is not None:
            offsets = torch.tensor([0] + [p.num_instances for p in problems[:-1]]).cumsum(0).tolist()
            segment = torch.cat([p.segment + o for p, o in zip(problems, offsets, strict=True)])
        keys = first.info.keys()
        return Problem(
            x=x,
            target=join([p.target for p in problems]),
            segment=segment,
            difficulty=join([p.difficulty for p in problems]),
            num_instances=sum(p.num_instances for p in problems),
            info={k: join([p.info[k] for p in problems]) for k in keys},
            constraint=AnswerConstraint.cat([p.constraint for p in problems]),
        )


def rows_of(segment: Tensor, index: Tensor, num_instances: int) -> tuple[Tensor, Tensor]:
    """Rows of instances `index` (in that order, each instance's rows in their order) and their
    new segment ids 0..len(index)-1; loop-free."""
    counts = torch.bincount(segment, minlength=num_instances)
    order = torch.argsort(segment, stable=True)
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)])[index]
    picked = counts[index]
    new_segment = torch.repeat_interleave(torch.arange(index.numel(), device=segment.device), picked)
    offset = torch.arange(int(picked.sum()), device=segment.device) - torch.repeat_interleave(
        picked.cumsum(0) - picked, picked
    )
    return order[torch.repeat_interleave(starts, picked) + offset], new_segment


def per_row(values: Tensor, like: Tensor, segment: Tensor | None) -> Tensor:
    """Broadcast per-instance `values` [N] onto the rows of an answer `like`."""
    if segment is not None:
        values = values[segment]
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def per_instance_sum(rows: Tensor, segment: Tensor | None, num_instances: int) -> Tensor:
    """Sum every non-instance dimension of `rows`, then over the rows of each instance."""
    flat = rows.flatten(1).sum(dim=1) if rows.dim() > 1 else rows  # flatten: also for zero rows
    if segment is None:
        return flat
    out = flat.new_zeros(num_instances)
    return out.index_add_(0, segment, flat)


def per_instance_mean(rows: Tensor, segment: Tensor | None, num_instances: int) -> Tensor:
    """Mean over every entry that belongs to each instance."""
    total = per_instance_sum(rows, segment, num_instances)
    size = per_instance_sum(torch.ones_like(rows), segment, num_instances)
    return total / size.clamp_min(1)


@dataclass
class SolveResult:
    """Per-instance record of one descent.

    `energy_history[t]` is the energy of the iterate after t accepted updates, so the
    lowest-energy pick pairs energy t with iterate t (the released IREM code was off by one).
    `snapshots[b]` is the iterate after b steps, for evaluating several budgets in one run.
    """

    y: Tensor
    steps: Tensor
    status: Tensor
    energy: Tensor
    best_y: Tensor
    best_energy: Tensor
    best_step: Tensor
    energy_history: Tensor | None = None
    trajectory: list[Tensor] | None = None
    snapshots: dict[int, Tensor] = field(default_factory=dict)
    step_size: Tensor | None = None
    # adaptive solvers: index into `rules` of the halting rule that stopped each instance (-1: none)
    stopped_by: Tensor | None = None
    rules: tuple[str, ...] = ()
    # best-of-N (solvers/best_of_n.py): which start each instance's answer came from
    start_index: Tensor | None = None
    # energy evaluations (each with its gradient) the answer cost per instance: the start's and one
    # per step, over every start and restart; compute compared across solvers in these units
    evaluations: Tensor | None = None
    # annealed descent (ired/annealed.py): the landscape each instance ended on (0: the sharpest)
    landscape: Tensor | None = None

    @property
    def num_instances(self) -> int:
        return self.steps.shape[0]

    def count(self, status: Status) -> int:
        return int((self.status == int(status)).sum().item())

    def summary(self) -> dict[str, float]:
        """Aggregate numbers worth logging."""
        out = {
            "steps_mean": self.steps.float().mean().item(),
            "converged": self.count(Status.CONVERGED) / max(self.num_instances, 1),
            "diverged": self.count(Status.DIVERGED) / max(self.num_instances, 1),
            "energy_final": torch.nanmean(self.energy.float()).item(),
            "energy_best": torch.nanmean(self.best_energy.float()).item(),
        }
        if self.stopped_by is not None:
            for i, name in enumerate(self.rules):
                out[f"stopped_by_{name}"] = int((self.stopped_by == i).sum()) / max(self.num_instances, 1)
        return out

    def detach(self) -> SolveResult:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.detach()
            elif isinstance(v, list):
                v = [t.detach() for t in v]
            elif isinstance(v, dict):
                v = {k: t.detach() for k, t in v.items()}
            out[f.name] = v
        return SolveResult(**out)
