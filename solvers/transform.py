"""Descent transforms: the small pieces a descent step is chained from (in the spirit of optax).

A step of `Descent` (solvers/descent.py) turns the gradient g at the iterate y into a move:

    d = g                                      then each transform's `direction` (clip, Adam, mirror map)
    step = step_size                           then each transform's `scale` (a schedule)
    proposal = y - lr_i * step * d             lr_i: each instance's multiplier (shrunk on rejection)
                                               (or a transform's `apply`: exponentiated gradient)
    proposal                                   then each transform's `move` (momentum, noise, projection)
    the problem's answer constraint            always (fixed entries, the task's projection)
    accept                                     all finite proposals, or a transform's `accept` (if lower)
    each transform's `after`                   what it carries to the next step (momentum's velocity)

A transform overrides only the hooks it needs; within each hook the chain's order is kept. Per-solve
state (a velocity, Adam's moments) comes from `init` as a dict of tensors, one row per answer row for
the keys named in `per_row`, one entry per instance for the rest, so the loop can follow instances
when a batch shrinks. A transform holds settings, never weights: its constructor validates them
and keeps each under its own name, so `settings()` reads them back (for `describe`, and to rebuild
a solver with changed settings through the same checks).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor


@dataclass
class StepContext:
    """What a transform sees of the step it is part of. `y` is the iterate the step starts from and
    `g` dE/dy there (zero at fixed entries); `lr` each instance's step multiplier; `t` the step's
    number (from 1) within `budget` steps; `segment` maps answer rows to instances (None: row i is
    instance i), `n` counts instances; `generator` draws noise; `training` is a solve a loss is
    differentiated through."""

    y: Tensor
    g: Tensor
    lr: Tensor
    t: int
    budget: int
    segment: Tensor | None
    n: int
    generator: torch.Generator | None
    training: bool = False


class Transform:
    """One piece of a descent step; see the module docstring for where each hook acts."""

    name: ClassVar[str] = "transform"  # its short name in a chain's description and in solver_settings
    per_row: ClassVar[tuple[str, ...]] = ()  # state keys with one row per answer row (the rest: per instance)
    categorical: ClassVar[bool] = False  # reads the answer's last dimension as classes (categorical answers only)

    def init(self, y: Tensor, n: int) -> dict[str, Tensor]:
        """The per-solve state, at the start `y` of `n` instances."""
        return {}

    def start(self, lr: Tensor, training: bool, generator: torch.Generator | None) -> Tensor:
        """Each instance's step multiplier at the start of a solve (EBT's random step sizes)."""
        return lr

    def direction(self, d: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        """The descent direction, from the gradient on (before the step size)."""
        return d

    def scale(self, step: Tensor, ctx: StepContext) -> Tensor:
        """The step size of this step (a schedule over the budget)."""
        return step

    def apply(self, y: Tensor, update: Tensor, ctx: StepContext) -> Tensor | None:
        """A move other than y - update (`update` = lr * step * d); None keeps the additive one."""
        return None

    def move(self, proposal: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        """The proposal, after the step (momentum, noise, a projection)."""
        return proposal

    def accept(
        self,
        s: Any,
        e_new: Tensor,
        finite_new: Tensor,
        all_finite: bool,
        evaluated: bool,
        diverged_here: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, bool] | None:
        """Which instances of the state `s` take their proposal, and whether all of them do (may stop
        or shrink instances in `s`); None keeps the default: every finite proposal, the rest diverged.
        `diverged_here(candidates)` says which candidates' energy is not finite at their own iterate."""
        return None

    def after(self, state: dict[str, Tensor], taken: Tensor, accept: Tensor, g: Tensor, ctx: StepContext) -> None:
        """After acceptance: `taken` is the move each row made (zero where rejected or stopped), `accept`
        which instances moved, `g` the gradient at the new iterate. Updates `state` in place."""

    @property
    def budget_dependent(self) -> bool:
        """Whether the step depends on the budget (a schedule over it): the iterate after b steps of a
        longer solve is then not the answer of a b-step solve."""
        return False

    # -- what the chain shows of it ----------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The constructor's settings as this transform holds them."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in names if hasattr(self, k)}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings().items())
        return f"{type(self).__name__}({shown})"


def overrides(transform: Transform, hook: str) -> bool:
    """Whether `transform` implements `hook` itself (the chain skips the base class's no-ops)."""
    return getattr(type(transform), hook) is not getattr(Transform, hook)


def finite(value: Any) -> bool:
    """A real number (not a bool) that is finite."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def require(ok: bool, owner: str, name: str, valid: str, value: Any) -> None:
    """Refuse a setting outside its range, naming the transform, the setting, the range and the value."""
    if not ok:
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}.")
