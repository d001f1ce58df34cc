"""`Descent`: gradient descent on E(x, y) in y, its step a chain of transforms, run by the one loop.

    y <- y - step_size * d,   d the gradient after the chain's direction transforms,

then the chain's moves, the problem's answer constraint and acceptance (solvers/transform.py).
Every solver config in configs/solver/ is a preset of this class listing its transforms (IREM's plain
descent lists none). `backward` names how a training loss differentiates the descent
(solvers/backward.py: last, truncated:k, unroll, per_step, implicit). Training solves only (a
differentiable solve with no budget given): `random_steps` adds a number of steps drawn uniformly in
[0, random_steps] to `max_steps` (EBT: the energy learns a landscape that budgets it was not trained
at descend well too).

An energy may offer `prepare(x)`, the part of its computation that depends on x alone, computed once
per descent and handed back at every step (MLPEnergy: the x half of its first layer).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.errors import SettingError, unknown_key_message
from irem.problem import SolveResult
from irem.solver import Solver, SolveRequest
from irem.solvers.backward import BackwardMode, backward_mode
from irem.solvers.loop import Halting, Phase, descend
from irem.solvers.step import DescentStep
from irem.solvers.transform import Transform, finite, require
from irem.solvers.transforms.accept import AcceptIfLower
from irem.solvers.transforms.clip import Clip
from irem.solvers.transforms.momentum import Momentum
from irem.solvers.transforms.noise import Noise
from irem.solvers.transforms.schedule import StepSchedule


@dataclass
class Plan:
    """A solve as the loop runs it: its phases and budget, how it is differentiated, and the request
    (a solver may change its constraint: the annealed one clamps)."""

    phases: list[Phase]
    budget: int
    request: SolveRequest
    backward: BackwardMode = field(default_factory=lambda: backward_mode("last"))
    training: bool = False
    report_step_size: bool = True
    owner: str = "solver"


class PhasedSolver(Solver):
    """A solver whose solve is a `Plan` of phases for the one loop (solvers/loop.py); a wrapper that
    halts (solvers/adaptive.py) runs the same plan with its halting rules."""

    def plan(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> Plan:
        raise NotImplementedError

    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        return run_plan(self.plan(energy, x, y0, budget, request), x, y0)

    @staticmethod
    def prepare_input(energy: EnergyFunction, x: Any, differentiable: bool) -> Any:
        """What the energy computes from x alone, once per descent (with a graph only when a loss will
        be differentiated through it)."""
        with torch.enable_grad() if differentiable else torch.no_grad():
            return energy.prepare(x)


def run_plan(plan: Plan, x: Any, y0: Tensor, halting: Halting | None = None) -> SolveResult:
    return descend(
        plan.phases,
        x,
        y0,
        plan.request,
        budget=plan.budget,
        backward=plan.backward,
        halting=halting,
        training=plan.training,
        report_step_size=plan.report_step_size,
        owner=plan.owner,
    )


class Descent(PhasedSolver):
    """Descend from y0 for at most `max_steps` steps of `step_size`, through `transforms` (a mapping of
    names to transforms, as a preset lists them, or a sequence), in that order.

    `learnable_step`: the step size is a parameter trained with the energy. `grad_tol`: an instance
    whose gradient norm falls below it stops, converged. `backward`, `random_steps`: the module
    docstring.
    """

    def __init__(
        self,
        step_size: float = 100.0,
        max_steps: int = 10,
        learnable_step: bool = False,
        transforms: Mapping[str, Transform] | Sequence[Transform] | None = None,
        backward: str | BackwardMode = "last",
        grad_tol: float | None = None,
        random_steps: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        require(finite(step_size) and step_size > 0, name, "step_size", "a finite number > 0", step_size)
        require(
            not isinstance(max_steps, bool) and isinstance(max_steps, int) and max_steps >= 0,
            name,
            "max_steps",
            "a whole number >= 0 (0: the start only, for inference; training needs >= 1)",
            max_steps,
        )
        require(
            grad_tol is None or (finite(grad_tol) and grad_tol >= 0),
            name,
            "grad_tol",
            "null (no tolerance) or a number >= 0",
            grad_tol,
        )
        require(
            not isinstance(random_steps, bool) and isinstance(random_steps, int) and random_steps >= 0,
            name,
            "random_steps",
            "an integer >= 0",
            random_steps,
        )
        items = (
            list((transforms or {}).items())
            if isinstance(transforms, Mapping)
            else [(t.name, t) for t in (transforms or ())]
        )
        wrong = [f"{k} ({type(t).__name__})" for k, t in items if not isinstance(t, Transform)]
        if wrong:
            raise TypeError(
                f"{name}: transforms must be descent transforms (irem.solvers.transform.Transform), got {', '.join(wrong)}."
            )
        self.transform_names = tuple(k for k, _ in items)
        self.chain = tuple(t for _, t in items)
        self.backward = backward_mode(backward)
        log_step = torch.tensor(math.log(step_size))
        if learnable_step:
            self.log_step_size = nn.Parameter(log_step)
        else:
            self.register_buffer("log_step_size", log_step)
        self.max_steps = int(max_steps)
        self.grad_tol = grad_tol
        self.random_steps = int(random_steps)
        self.descent_step()  # refuses a chain that accepts, or applies its move, twice

    @property
    def learnable_step(self) -> bool:
        return isinstance(self.log_step_size, nn.Parameter)

    @property
    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    @property
    def snapshots_match_budgets(self) -> bool:
        """Whether the iterate after b steps equals a b-step solve, so one solve can report every budget
        (irem/evaluation.py relies on it): not when a transform schedules over the budget."""
        return not any(t.budget_dependent for t in self.chain)

    def descent_step(self, backward: BackwardMode | None = None) -> DescentStep:
        """The step this solver takes (with its current settings)."""
        detach = (backward or self.backward).detach_steps
        return DescentStep(self.log_step_size, self.chain, self.grad_tol, detach_steps=detach)

    def scaled_step(self, factor: float) -> Iterator[None]:
        return scaled_log_step(self.log_step_size, factor)

    def for_energy(self, energy: EnergyFunction) -> Descent:
        landscapes = int(getattr(energy, "landscapes", 0) or 0)
        if landscapes:
            raise SettingError(
                f"energy.landscapes={landscapes} makes the energy a family of landscapes whose step argument is a "
                f"landscape index, but {type(self).__name__} passes its step numbers there. IRED trains such an "
                f"energy with objective=ired and descends it with solver=annealed (energy.landscapes={landscapes} "
                "objective=ired solver=annealed, as experiment=ired_inverse sets them); or use energy.landscapes=0."
            )
        return self

    def plan(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> Plan:
        T = self.max_steps if budget is None else int(budget)
        training = request.differentiable and budget is None
        if training and self.random_steps:
            T += int(torch.randint(0, self.random_steps + 1, (1,), generator=request.generator))
        phase = Phase(energy, self.descent_step(), T)
        return Plan([phase], T, request, self.backward, training, owner=type(self).__name__)

    def settings(self) -> dict[str, Any]:
        return {
            "step_size": float(self.step_size.detach()),
            "max_steps": self.max_steps,
            "learnable_step": self.learnable_step,
            "transforms": dict(zip(self.transform_names, self.chain, strict=True)),
            "backward": self.backward,
            "grad_tol": self.grad_tol,
            "random_steps": self.random_steps,
        }

    def with_settings(self, changes: dict[str, Any]) -> Descent:
        """This descent with `changes`: its own settings, or a transform named by its flat setting
        (`FLAT_SETTINGS`: noise=0.01, accept_if_lower=true, momentum=0.5, ...), added to the chain in
        IREM's order, changed, or taken out (noise=0, accept_if_lower=false); built anew through the
        same constructors, the learned step size carried over."""
        current = self.settings()
        for key in changes:
            if key not in current and key not in FLAT_SETTINGS:
                message = unknown_key_message(f"solver_settings.{key}", key, [*current, *FLAT_SETTINGS])
                raise SettingError(f"{message} (for {type(self).__name__})")
        chain = current["transforms"]
        flat = [k for k in changes if k in FLAT_SETTINGS]
        for key in sorted(flat, key=lambda k: FLAT_SETTINGS[k][2] != FLAT_MAIN[FLAT_SETTINGS[k][0]]):  # main ones first
            try:
                chain = _with_flat_setting(chain, key, changes[key])
            except (ValueError, TypeError) as err:
                raise SettingError(f"solver_settings.{key}={changes[key]!r} refused: {err}") from None
        own = {k: v for k, v in changes.items() if k not in FLAT_SETTINGS}
        try:
            changed = Descent(**{**current, **own, "transforms": chain})
        except (ValueError, TypeError) as err:
            raise SettingError(f"solver_settings {own} refused by Descent: {err}") from None
        changed.load_state_dict(self.state_dict())
        return changed

    def describe(self) -> str:
        """The solver as its chain: `Descent(step_size=100, max_steps=10, backward=last): clip -> ...`."""
        step = f"{float(self.step_size.detach()):.4g}" + (" learned" if self.learnable_step else "")
        head = f"{type(self).__name__}(step_size={step}, max_steps={self.max_steps}, backward={self.backward}"
        extra = (f", grad_tol={self.grad_tol}" if self.grad_tol is not None else "") + (
            f", random_steps={self.random_steps}" if self.random_steps else ""
        )
        chain = " -> ".join(map(repr, self.chain)) or "plain steps"
        return f"{head}{extra}): {chain}"


# The flat settings irem-eval's +solver_settings take on a descent: the transform each sets (by its name
# in the chain and its class) and which of its settings (None: the transform is on or off).
FLAT_SETTINGS: dict[str, tuple[str, type[Transform], str | None]] = {
    "grad_clip": ("clip", Clip, "max_norm"),
    "schedule": ("schedule", StepSchedule, "kind"),
    "final_fraction": ("schedule", StepSchedule, "final_fraction"),
    "momentum": ("momentum", Momentum, "coef"),
    "restart": ("momentum", Momentum, "restart"),
    "nesterov": ("momentum", Momentum, "nesterov"),
    "noise": ("noise", Noise, "scale"),
    "accept_if_lower": ("accept_if_lower", AcceptIfLower, None),
    "shrink": ("accept_if_lower", AcceptIfLower, "shrink"),
}
FLAT_MAIN = {"clip": "max_norm", "schedule": "kind", "momentum": "coef", "noise": "scale", "accept_if_lower": None}
ORDER = ("clip", "schedule", "random_step_size", "momentum", "noise", "accept_if_lower")  # IREM's, for insertion


def _with_flat_setting(chain: dict[str, Transform], key: str, value: Any) -> dict[str, Transform]:
    name, kind, param = FLAT_SETTINGS[key]
    found = next((k for k, t in chain.items() if isinstance(t, kind)), None)
    off = value in (False, 0, None, "constant") if param == FLAT_MAIN[name] else False
    if found is None and param != FLAT_MAIN[name]:  # an option of a transform the chain does not have
        if value in (False, None) or (found is None and value == _default(kind, param)):
            return chain
        raise ValueError(f"it sets the {name} transform, which this descent does not have; give solver_settings.{name}")
    if off:
        return {k: t for k, t in chain.items() if k != found}
    settings = {} if found is None else chain[found].settings()
    if param is not None:
        settings[param] = value
    built = kind(**settings)
    if found is not None:
        return {k: (built if k == found else t) for k, t in chain.items()}
    rank = ORDER.index(name)
    names = list(chain)
    at = next(
        (i for i, k in enumerate(names) if chain[k].name in ORDER and ORDER.index(chain[k].name) > rank), len(names)
    )
    items = list(chain.items())
    return dict(items[:at] + [(name, built)] + items[at:])


def _default(kind: type, param: str) -> Any:
    return inspect.signature(kind.__init__).parameters[param].default


@contextmanager
def scaled_log_step(log_step: Tensor, factor: float) -> Iterator[None]:
    """A log step-size tensor (a parameter or a buffer) shifted by log(factor), restored bit for bit."""
    saved = log_step.detach().clone()
    try:
        with torch.no_grad():
            log_step.add_(math.log(factor))
        yield
    finally:
        with torch.no_grad():
            log_step.copy_(saved)
