"""The plain settings of a trained solver: changing them at inference, and saying what ran.

irem-eval and irem-study take `solver_settings` (System 2 inference: Langevin noise,
accept-if-lower, momentum) and apply them to the model's trained solver, which keeps what it
learned (a learnable step size); a wrapper (adaptive, best-of-N) passes them to the descent it
wraps. The same reading of a solver's settings tells a table and a record which solver they are
for, with the settings that differ from its constructor's defaults.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from irem.config import SettingError, constructor_default, unknown_key_message, valid_keys

PLAIN = (bool, int, float, str)


def _target(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def apply_solver_settings(solver: torch.nn.Module, settings: dict[str, Any]) -> None:
    """Set `settings` on the solver (or the descent it wraps). Only constructor arguments stored as
    plain attributes can change; any other key is refused with the ones that can."""
    target = getattr(solver, "descent", None) or solver
    names = valid_keys({"_target_": _target(target)}) or []
    changeable = [n for n in names if n in vars(target) and not isinstance(vars(target)[n], torch.Tensor)]
    for key, value in settings.items():
        if key not in changeable:
            message = unknown_key_message(f"solver_settings.{key}", key, changeable)
            raise SettingError(f"{message} (for {type(target).__name__})")
        old = vars(target)[key]
        setattr(target, key, value if old is None or value is None else type(old)(value))


def set_solver_settings(model: torch.nn.Module, settings: Any, source: str) -> None:
    """`solver_settings` of irem-eval and irem-study, for the model loaded from `source`."""
    if not settings:
        return
    if not hasattr(model, "solver"):
        raise SettingError(f"solver_settings apply to energy models; {source} holds a {type(model).__name__}.")
    apply_solver_settings(model.solver, dict(settings))


def solver_settings(solver: Any) -> dict[str, Any]:
    """The solver's type and its plain settings (a learned step size read as its value): what a
    wrapper's own config (descent: null) does not show of the trained descent it runs."""
    out: dict[str, Any] = {"type": type(solver).__name__}
    step = getattr(solver, "step_size", None)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        out["step_size"] = float(step.detach())
    out.update({k: v for k, v in vars(solver).items() if not k.startswith("_") and isinstance(v, PLAIN)})
    return out


def describe_solver(solver: Any) -> str:
    """One line naming the solver and the settings that matter: step size and steps always, every
    other setting where it differs from the constructor's default; a wrapper names its rules and
    the descent it runs. E.g. `AdaptiveDescent(max_steps=80, min_steps=2, rules=EnergyPlateau)
    over GradientDescent(step_size=100, max_steps=10)`."""
    settings = solver_settings(solver)
    kind = settings.pop("type")
    try:
        params = valid_keys({"_target_": _target(solver)})
    except ValueError:  # a class defined where it cannot be imported from (a test's): show everything
        params = None
    shown = []
    for key, value in settings.items():
        if params is not None and key not in params:
            continue  # module state such as `training`, not a setting
        default = constructor_default(_target(solver), key) if params is not None else inspect.Parameter.empty
        if key in ("step_size", "max_steps") or default is inspect.Parameter.empty or value != default:
            shown.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    rules = getattr(solver, "rules", None)
    if rules:
        shown.append("rules=" + "+".join(type(r).__name__ for r in rules))
    line = f"{kind}({', '.join(shown)})"
    descent = getattr(solver, "descent", None)
    return line if descent is None else f"{line} over {describe_solver(descent)}"
