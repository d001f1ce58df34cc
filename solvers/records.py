"""Full-size records of a solve, written as instances finish, and the one place a `SolveResult` is made.

A descent loop that drops finished instances from its batch (solvers/loop.py) and best-of-N, which
picks each instance's winning start (solvers/best_of_n.py), both hand over results for some of the
instances at a time. `Records` holds a result's fields at full size: per answer row (the answer,
the lowest-energy iterate, the snapshots) and per instance (energies, steps, status, ...). A field
written for the whole batch at once is taken as it is, with its graph (a training solve's answer);
one written in parts is a detached copy, filled in instance by instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from irem.problem import SolveResult

# what an instance field holds before it is written (those never written stay None in the result)
FILL = {"energy": math.nan, "best_energy": math.nan, "status": 1, "stopped_by": -1}


class Records:
    """A result's fields for `n` instances whose answer rows start as `start` (see the module docstring)."""

    def __init__(self, start: Tensor, n: int, snapshots: Sequence[int] = ()) -> None:
        self.start, self.n = start, n
        self.snapshots = sorted(set(snapshots))
        self.rows: dict[str, Tensor] = {}
        self._shared: set[str] = set()  # row fields taken as they are: copied before any write into them
        self.inst: dict[str, Tensor] = {}
        self.history: Tensor | None = None
        self.trajectory: list[Tensor] | None = None
        self.rules: tuple[str, ...] = ()

    # -- rows: the answer, the lowest-energy iterate, snapshots (key f"snap{b}") ----------------------
    def set_rows(self, key: str, values: Tensor) -> None:
        """Field `key` for every row at once, taken as it is."""
        self.rows[key] = values
        self._shared.add(key)

    def put_rows(self, key: str, dst: Tensor, values: Tensor) -> None:
        """Rows `dst` of field `key`; rows not written yet hold the start."""
        if key not in self.rows or key in self._shared:
            self.rows[key] = self.rows.get(key, self.start).detach().clone()
            self._shared.discard(key)
        self.rows[key][dst] = values.detach()

    # -- per instance --------------------------------------------------------------------------------
    def set(self, key: str, values: Tensor | None) -> None:
        """Field `key` for every instance at once."""
        if values is not None:
            self.inst[key] = values

    def put(self, key: str, ids: Tensor, values: Tensor) -> None:
        """Instances `ids` of field `key` (allocated at full size, `FILL` or zero, on first use)."""
        if key not in self.inst:
            fill = FILL.get(key, 0)
            self.inst[key] = torch.full((self.n,), fill, dtype=values.dtype, device=values.device)
        self.inst[key][ids] = values.detach()

    def result(self) -> SolveResult:
        r, i = self.rows, self.inst
        return SolveResult(
            y=r["y"],
            steps=i["steps"],
            status=i["status"],
            energy=i["energy"],
            best_y=r["best_y"],
            best_energy=i["best_energy"],
            best_step=i["best_step"],
            energy_history=self.history,
            trajectory=self.trajectory,
            snapshots={b: r[f"snap{b}"] for b in self.snapshots},
            step_size=i.get("step_size"),
            stopped_by=i.get("stopped_by"),
            rules=self.rules,
            start_index=i.get("start_index"),
            evaluations=i.get("evaluations"),
            landscape=i.get("landscape"),
        )
