"""Containers that flow between tasks, energies and solvers.

`Problem` is a batch of instances; `SolveResult` is what a solver hands back, with per-instance
bookkeeping in the style of theseus' NonlinearOptimizerInfo. Both know about `segment`, the
instance id of each row of a variable-size answer (graph edges), so per-instance reductions work
the same for a 20x20 matrix and for a batch of graphs of different sizes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


class Status(enum.IntEnum):
    """Why an instance stopped descending."""

    CONVERGED = 0
    MAX_STEPS = 1
    DIVERGED = 2


def _move(value: Any, device: torch.device | str) -> Any:
    return value.to(device) if hasattr(value, "to") else value


@dataclass
class Problem:
    """A batch of `num_instances` problems.

    `x` is whatever the energy consumes (a tensor, a torch-geometric Batch, token ids). `target`
    is the ground-truth answer in the same layout as a candidate `y`, or None at inference.
    `segment` maps each row of `y` to its instance when instances have different answer sizes;
    it is None when row i of `y` is instance i. `difficulty` is a per-instance scalar (input
    scale, condition number, graph size) that studies cut results by.
    """

    x: Any
    target: Tensor | None = None
    segment: Tensor | None = None
    difficulty: Tensor | None = None
    num_instances: int = -1
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_instances < 0:
            if self.segment is not None:
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
        )

    def _require_dense(self, what: str) -> None:
        if self.segment is not None or not isinstance(self.x, Tensor):
            raise NotImplementedError(
                f"Problem.{what} works on dense problems (tensor x, no segment); this problem has "
                f"x of type {type(self.x).__name__} and segment={'set' if self.segment is not None else 'None'}."
            )

    def select(self, index: Tensor) -> Problem:
        """The sub-batch of instances `index`, in that order.

        Dense problems index every per-instance tensor. Problems with a `segment` need an x that
        can pick instances itself (a torch-geometric Batch: `index_select`); their answer rows
        are regathered instance by instance and the segment renumbered.
        """
        if self.segment is not None:
            return self._select_segments(index)
        self._require_dense("select")

        def pick(v: Any) -> Any:
            return v[index] if isinstance(v, Tensor) and v.shape[:1] == (self.num_instances,) else v

        return Problem(
            x=self.x[index],
            target=None if self.target is None else self.target[index],
            difficulty=None if self.difficulty is None else self.difficulty[index],
            info={k: pick(v) for k, v in self.info.items()},
        )

    def _select_segments(self, index: Tensor) -> Problem:
        if isinstance(self.x, Tensor) or not callable(getattr(self.x, "index_select", None)):
            raise NotImplementedError(
                "Problem.select works on dense problems (tensor x, no segment) and on segmented problems "
                f"whose x selects instances (a torch-geometric Batch); got x of type {type(self.x).__name__} "
                "with a segment."
            )
        from torch_geometric.data import Batch  # a core dependency; only graph problems get here

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
            x=Batch.from_data_list(self.x.index_select(index.cpu())).to(self.segment.device),
            target=None if self.target is None else self.target[rows],
            segment=segment,
            difficulty=None if self.difficulty is None else self.difficulty[index],
            num_instances=int(index.numel()),
            info={k: pick(v) for k, v in self.info.items()},
        )

    @staticmethod
    def cat(problems: list[Problem]) -> Problem:
        """Concatenate dense problems along the instance dimension."""
        for p in problems:
            p._require_dense("cat")

        def join(values: list[Any]) -> Any:
            if any(v is None for v in values):
                return None
            return torch.cat(values)

        keys = problems[0].info.keys()
        return Problem(
            x=torch.cat([p.x for p in problems]),
            target=join([p.target for p in problems]),
            difficulty=join([p.difficulty for p in problems]),
            info={k: join([p.info[k] for p in problems]) for k in keys},
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
