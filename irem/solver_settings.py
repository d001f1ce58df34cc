"""The settings of a trained solver: changing them at inference, and saying what ran.

irem-eval and irem-study take `solver_settings` (System 2 inference: Langevin noise,
accept-if-lower, momentum) and rebuild the model's trained solver with them through its own
constructor (`Solver.with_settings`), so a changed value passes the checks a config's does, and
what it learned (a learnable step size) carries over; a wrapper (adaptive, best-of-N) passes them
to the descent it wraps. The same solver describes itself for tables and records (`describe`).
"""

from __future__ import annotations

from typing import Any

import torch

from irem.errors import SettingError
from irem.solver import Solver

PLAIN = (bool, int, float, str)


def apply_solver_settings(solver: Solver, settings: dict[str, Any]) -> Solver:
    """`solver` with `settings` changed (see the module docstring)."""
    return solver.with_settings(dict(settings)) if settings else solver


def set_solver_settings(model: torch.nn.Module, settings: Any, source: str) -> None:
    """`solver_settings` of irem-eval and irem-study, for the model loaded from `source`."""
    if not settings:
        return
    if not hasattr(model, "solver"):
        raise SettingError(f"solver_settings apply to energy models; {source} holds a {type(model).__name__}.")
    model.solver = apply_solver_settings(model.solver, dict(settings))


def solver_settings(solver: Solver) -> dict[str, Any]:
    """The solver's type, its one-line description and its plain settings, for a study's record."""
    out: dict[str, Any] = {"type": type(solver).__name__, "describe": solver.describe()}
    out.update({k: v for k, v in solver.settings().items() if isinstance(v, PLAIN) or v is None})
    return out


def describe_solver(solver: Solver) -> str:
    """One line naming the solver and the settings that matter, a descent as its chain of transforms and a
    wrapper with the descent it runs: `AdaptiveDescent(max_steps=80, ..., rules=EnergyPlateau) over
    Descent(step_size=100, max_steps=10, backward=last): plain steps`."""
    return solver.describe()
