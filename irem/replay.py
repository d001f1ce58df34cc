"""A replay buffer of partially solved instances (IREM).

After each training descent the final iterates are stored with their inputs and targets; later
batches continue descent from them, so the energy learns what to do near an answer, not only from
a random start. Storage is preallocated, circular, and part of the model's state_dict (via
`get_extra_state`), so a resumed run continues from the same buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from irem.problem import AnswerConstraint, Problem


@runtime_checkable
class ReplayFormat(Protocol):
    """What a task defines when its instances cannot be stored as dense rows (graph batches, text
    windows): the tensors kept of a solved batch (first dimension the replay unit; None: no replay for
    this problem), and the problem and starts they give back."""

    def replay_items(self, problem: Problem, y: Tensor) -> dict[str, Tensor] | None: ...

    def from_replay(self, items: dict[str, Tensor]) -> tuple[Problem, Tensor]: ...


def replay_items(task: Any, problem: Problem, y: Tensor) -> dict[str, Tensor] | None:
    """What the replay buffer keeps of a solved batch: the task's own format, else, for dense problems,
    x, the target and the answer (and the fixed entries), one row per instance; None when neither
    applies (a problem with a segment, whose rows only the task could regroup). A projection is not
    stored: it acts row by row (AnswerConstraint), so the fresh batch's applies to replayed rows too."""
    if isinstance(task, ReplayFormat):
        return task.replay_items(problem, y)
    if problem.segment is not None or not isinstance(problem.x, Tensor) or problem.target is None:
        return None
    items = {"x": problem.x, "target": problem.target, "y": y}
    c = problem.constraint
    if c is not None and c.mask is not None:
        items.update(fixed_mask=c.mask, fixed_values=c.values)
    return items


def from_replay(
    task: Any, items: dict[str, Tensor], project: Callable[[Tensor], Tensor] | None = None
) -> tuple[Problem, Tensor]:
    """The problem and starting answers `replay_items` stored (replayed items lose their difficulty and
    keep their fixed entries), projected by `project`: the projection of the batch they join."""
    if isinstance(task, ReplayFormat):
        return task.from_replay(items)
    constraint = None
    if "fixed_mask" in items or project is not None:
        constraint = AnswerConstraint(mask=items.get("fixed_mask"), values=items.get("fixed_values"), project=project)
    return Problem(x=items["x"], target=items["target"], difficulty=None, constraint=constraint), items["y"]


class ReplayBuffer(nn.Module):
    def __init__(self, capacity: int = 10_000) -> None:
        super().__init__()
        if capacity < 0:
            raise ValueError(f"ReplayBuffer: capacity must be >= 0, got {capacity}.")
        self.capacity = int(capacity)
        self._store: dict[str, Tensor] = {}
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, **items: Tensor) -> None:
        """Store a batch; every item has the instance dimension first."""
        if self.capacity == 0:
            return
        n = next(iter(items.values())).shape[0]
        if not self._store:
            self._store = {k: v.new_zeros((self.capacity, *v.shape[1:])) for k, v in items.items()}
        if set(items) != set(self._store):
            raise ValueError(f"ReplayBuffer.add: got keys {sorted(items)}, buffer holds {sorted(self._store)}.")
        idx = (self._next + torch.arange(min(n, self.capacity))) % self.capacity
        for k, v in items.items():
            self._store[k][idx] = v[-len(idx) :].detach().to(self._store[k].device)
        self._next = int((self._next + len(idx)) % self.capacity)
        self._size = min(self._size + len(idx), self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        if n > self._size:
            raise ValueError(f"ReplayBuffer.sample: asked for {n} items, holds {self._size}.")
        idx = torch.randint(self._size, (n,), generator=generator)
        return {k: v[idx] for k, v in self._store.items()}

    def get_extra_state(self) -> Any:
        return {
            "store": {k: v[: self._size].clone() for k, v in self._store.items()},
            "next": self._next,
            "size": self._size,
        }

    def set_extra_state(self, state: Any) -> None:
        size = int(state["size"])
        self._store = {}
        for k, v in state["store"].items():
            full = v.new_zeros((self.capacity, *v.shape[1:]))
            full[:size] = v
            self._store[k] = full
        self._next, self._size = int(state["next"]), size
