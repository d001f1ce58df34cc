"""Per-instance stopping rules for descent solvers.

A rule looks at one instance's progress after each step and says whether it is done. Rules are
plain objects with per-instance state held in tensors, so the solver that uses them
(`solvers/adaptive.py`) can drop finished instances from its active batch and index the state
of the rest along with their iterates. Any solver that produces a `StepInfo` per step can use
them; none of them knows about tasks.

    EnergyPlateau(tol=1e-3, patience=2)   energy changes under tol (x the first step's) `patience` times
    GradNorm(tol=1e-2, relative=False)    ||dE/dy|| under tol (x its value after step 1)
    StepCollapse(min_step=1.0)            with accept-if-lower: the shrunk step is below min_step
    BudgetCap(max_steps=40)               a hard per-instance cap under the solver's budget
    Verified()                            the task's verifier accepts the current answer (uses the
                                          task's check: report its results as verified ones)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class StepInfo:
    """What the rules see after step `t`, one entry per active instance."""

    t: int
    energy: Tensor  # energy of the current iterate (after accept / reject)
    previous_energy: Tensor  # energy of the iterate before this step
    grad_norm: Tensor  # ||dE/dy|| at the current iterate (NaN where it was not computed)
    step_size: Tensor  # the step each instance would take next (shrinks on rejection)
    accepted: Tensor  # bool: this step's proposal was taken
    verified: Tensor | None = None  # bool: the task's check accepts the current answer (asked by Verified)


class HaltingRule(abc.ABC):
    """Decides per instance when descent may stop.

    `start(n, device)` returns the rule's per-instance state (a dict of tensors with a leading
    dimension n, possibly empty); `update(state, info)` returns (done, new state). The solver
    indexes every state tensor when it drops finished instances, so the state must be per
    instance and nothing else.
    """

    name: str = "rule"
    needs_verifier: bool = False  # True: the solver must hand it the task's verdict (StepInfo.verified)

    def start(self, n: int, device: torch.device) -> dict[str, Tensor]:
        return {}

    @abc.abstractmethod
    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        """(done [n] bool, state) after one step."""


class EnergyPlateau(HaltingRule):
    """Stop once the energy has changed by less than `tol` on `patience` consecutive steps.

    `relative` measures each change against the instance's first step, |E_t - E_{t-1}| /
    |E_1 - E_0|: one tolerance then serves energies of any scale and offset, and "the descent has
    slowed to a thousandth of its first step" means the same on an easy and a hard instance.
    (Against |E| itself a descent whose minimum is 0 would keep a constant relative change and
    never stop.) `floor` guards an instance whose first step barely moved. A rejected proposal
    (accept-if-lower) changes nothing and so counts as a flat step.
    """

    name = "plateau"

    def __init__(self, tol: float = 1e-3, patience: int = 2, relative: bool = True, floor: float = 1e-12) -> None:
        if tol <= 0:
            raise ValueError(f"EnergyPlateau: tol must be positive, got {tol}.")
        if patience < 1:
            raise ValueError(f"EnergyPlateau: patience must be >= 1, got {patience}.")
        self.tol, self.patience, self.relative, self.floor = float(tol), int(patience), bool(relative), float(floor)

    def start(self, n: int, device: torch.device) -> dict[str, Tensor]:
        return {
            "flat_steps": torch.zeros(n, dtype=torch.long, device=device),
            "scale": torch.ones(n, device=device),
        }

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        change = (info.energy - info.previous_energy).abs()
        scale = state["scale"]
        if self.relative:
            if info.t == 1:
                scale = change.detach().clamp_min(self.floor).to(scale.dtype)
            change = change / scale
        flat = change < self.tol
        count = torch.where(flat, state["flat_steps"] + 1, torch.zeros_like(state["flat_steps"]))
        return count >= self.patience, {"flat_steps": count, "scale": scale}


class GradNorm(HaltingRule):
    """Stop when the gradient norm at the current iterate is below `tol` (a stationary point).

    `relative` compares against the norm after the first step instead, so the rule reads "the
    gradient has fallen to tol of where it started": on an ill-conditioned landscape that takes
    longer, which an energy-change rule misses (the first steps remove the stiff directions and
    the energy barely moves afterwards, however far the answer still is).
    """

    name = "grad_norm"

    def __init__(self, tol: float = 1e-2, relative: bool = False, floor: float = 1e-12) -> None:
        if tol <= 0:
            raise ValueError(f"GradNorm: tol must be positive, got {tol}.")
        self.tol, self.relative, self.floor = float(tol), bool(relative), float(floor)

    def start(self, n: int, device: torch.device) -> dict[str, Tensor]:
        return {"scale": torch.ones(n, device=device)} if self.relative else {}

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.relative:
            return info.grad_norm < self.tol, state
        scale = state["scale"]
        if info.t == 1:
            scale = info.grad_norm.clamp_min(self.floor).to(scale.dtype)
        return info.grad_norm < self.tol * scale, {"scale": scale}


class StepCollapse(HaltingRule):
    """Stop when accept-if-lower has shrunk an instance's step below `min_step`: no nearby
    point has lower energy, which is what convergence means for that solver."""

    name = "step_collapse"

    def __init__(self, min_step: float) -> None:
        if min_step <= 0:
            raise ValueError(f"StepCollapse: min_step must be positive, got {min_step}.")
        self.min_step = float(min_step)

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        return info.step_size < self.min_step, state


class BudgetCap(HaltingRule):
    """Stop every instance after `max_steps` steps, under the solver's own budget."""

    name = "budget_cap"

    def __init__(self, max_steps: int) -> None:
        if max_steps < 0:
            raise ValueError(f"BudgetCap: max_steps must be >= 0, got {max_steps}.")
        self.max_steps = int(max_steps)

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        return torch.full_like(info.accepted, info.t >= self.max_steps), state


class Verified(HaltingRule):
    """Stop an instance once the task's verifier accepts its current answer (a valid Sudoku board).

    Unlike the energy-based rules it uses the ground-truth check, which a real solver of such a
    task has (a board can be verified cheaply) but a plain energy model does not: results that
    halt with it are verified results, and are reported as such.
    """

    name = "verified"
    needs_verifier = True

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        if info.verified is None:
            raise ValueError("Verified: the solver gave no verdict (StepInfo.verified); it needs the task's verifier.")
        return info.verified, state
