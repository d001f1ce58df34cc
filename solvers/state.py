"""Per-instance descent state, and the energy evaluations a step makes.

`DescentState` holds what each instance of the active batch carries from step to step: the iterate
and its gradient and energy, its step multiplier (shrunk by rejections, drawn at random in EBT's
training), its status and whether it still moves, the steps it took, its lowest-energy iterate,
and each transform's state. `select` follows instances when a batch shrinks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import AnswerConstraint, Status, per_instance_sum


@dataclass
class DescentState:
    """Per-instance state of the instances a descent is stepping (the active batch).

    Row tensors (`y`, `g`, `best_y`) have one row per answer row (rows of an instance share its
    `segment` id); instance tensors have one entry per instance. `active` marks the instances that
    still move; `all_active` is its host-side summary (True only when every one does). `accepted`
    and `previous_energy` describe the last step, for halting rules. `chain` holds each transform's
    state and `row_keys` which of its entries are per row.
    """

    y: Tensor
    g: Tensor | None
    e: Tensor
    lr: Tensor
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
    chain: list[dict[str, Tensor]] = field(default_factory=list)
    row_keys: list[tuple[str, ...]] = field(default_factory=list)

    def any_active(self) -> bool:
        return self.all_active or bool(self.active.any())

    def select(self, keep: Tensor, rows: Tensor, segment: Tensor | None) -> DescentState:
        """The state of instances `keep` (local ids) whose answer rows are `rows`, renumbered by
        `segment`: what a halting loop keeps when finished instances leave the batch."""

        def inst(v: Tensor | None) -> Tensor | None:
            return None if v is None else v[keep]

        active = self.active[keep]
        chain = [
            {k: v[rows] if k in per_row else v[keep] for k, v in st.items()}
            for st, per_row in zip(self.chain, self.row_keys, strict=True)
        ]
        return replace(
            self,
            y=self.y[rows],
            g=None if self.g is None else self.g[rows],
            e=self.e[keep],
            lr=self.lr[keep],
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
            chain=chain,
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
