"""IREM's gradient descent and its variants by their flat settings: a shorthand for a `Descent` chain.

`GradientDescent(step_size=..., accept_if_lower=True, momentum=0.5, ...)` builds the `Descent`
(solvers/descent.py) whose chain of transforms does what the flags name, in IREM's order: clip the
gradient, schedule the step, draw EBT's random step sizes, momentum, Langevin noise (with the
step's schedule when `noise_decay`), accept-if-lower. The flags are settings of those transforms,
which validate them; `truncate` and `detach_steps` name the backward mode (`truncate` steps keep
their graph, 0 for all; `detach_steps`: each step through its own gradient). Configs list the
transforms themselves (configs/solver/); this class keeps library code, and runs saved under its
name, working.
"""

from __future__ import annotations

from irem.schedules import Schedule
from irem.solvers.descent import Descent
from irem.solvers.transform import Transform, finite, require
from irem.solvers.transforms.accept import AcceptIfLower
from irem.solvers.transforms.clip import Clip
from irem.solvers.transforms.momentum import Momentum
from irem.solvers.transforms.noise import Noise
from irem.solvers.transforms.random_step import RandomStepSize
from irem.solvers.transforms.schedule import StepSchedule


def backward_name(truncate: int, detach_steps: bool) -> str:
    """The backward mode the flat `truncate` and `detach_steps` name (solvers/backward.py)."""
    require(
        isinstance(truncate, int) and truncate >= 0, "GradientDescent", "truncate", ">= 0 (0 = full unroll)", truncate
    )
    if detach_steps:
        return "per_step" if truncate == 0 else f"per_step:{truncate}"
    return {0: "unroll", 1: "last"}.get(truncate, f"truncated:{truncate}")


class GradientDescent(Descent):
    """y <- y - step_size * dE/dy (+ noise), for at most `max_steps` steps; the flags are the module
    docstring's."""

    SCHEDULES = StepSchedule.KINDS

    def __init__(
        self,
        step_size: float = 100.0,
        max_steps: int = 10,
        learnable_step: bool = False,
        noise: float = 0.0,
        accept_if_lower: bool = False,
        shrink: float = 0.5,
        grad_clip: float | None = None,
        grad_tol: float | None = None,
        truncate: int = 1,
        schedule: str = "constant",
        final_fraction: float = 0.1,
        noise_decay: bool = False,
        random_step_size: bool = False,
        random_steps: int = 0,
        detach_steps: bool = False,
        momentum: float = 0.0,
        restart: bool = False,
    ) -> None:
        curve = Schedule(schedule, final_fraction)  # validated whether or not it is used
        require(
            finite(noise) and noise >= 0,
            "GradientDescent",
            "noise (the Langevin noise scale)",
            "a finite number >= 0",
            noise,
        )
        require(finite(momentum) and 0 <= momentum < 1, "GradientDescent", "momentum", "in [0, 1)", momentum)
        candidates: list[tuple[bool, Transform]] = [
            (grad_clip is not None, Clip(grad_clip) if grad_clip is not None else None),
            (not curve.constant, StepSchedule(schedule, final_fraction)),
            (random_step_size, RandomStepSize()),
            (momentum != 0, Momentum(momentum, restart=restart)),
            (noise != 0, Noise(noise, schedule if noise_decay else "constant", final_fraction)),
            (accept_if_lower, AcceptIfLower(shrink)),
        ]
        chain = [t for used, t in candidates if used]
        super().__init__(
            step_size, max_steps, learnable_step, chain, backward_name(truncate, detach_steps), grad_tol, random_steps
        )
        self.curve = curve

    @staticmethod
    def upgrade_config(node: dict, root: dict) -> dict:  # noqa: ARG004
        """A config saved with these flat flags as the Descent preset that lists the same transforms
        (configs/solver/), so a run saved before the presets changed form loads, evaluates and resumes
        as it did."""
        flat = {k: v for k, v in node.items() if k != "_target_"}
        chain = GradientDescent(**flat)  # the flags' own checks, and their chain
        base = "irem.solvers.transforms."
        modules = {
            "Clip": "clip",
            "StepSchedule": "schedule",
            "RandomStepSize": "random_step",
            "Momentum": "momentum",
            "Noise": "noise",
            "AcceptIfLower": "accept",
        }
        transforms = {
            t.name: {"_target_": f"{base}{modules[type(t).__name__]}.{type(t).__name__}", **t.settings()}
            for t in chain.chain
        }
        return {
            "_target_": "irem.solvers.descent.Descent",
            "step_size": flat.get("step_size", 100.0),
            "max_steps": chain.max_steps,
            "learnable_step": bool(flat.get("learnable_step", False)),
            "backward": str(chain.backward),
            "grad_tol": chain.grad_tol,
            "random_steps": chain.random_steps,
            "transforms": transforms,
        }

    def multiplier(self, t: int, budget: int) -> float:
        """The schedule's factor on the step of step t of `budget` (irem/schedules.py)."""
        return self.curve.at_step(t, budget)
