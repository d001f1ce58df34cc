"""Nested reasoning: one energy over intermediate variables, composed from trained sub-energies.

A computation inside another computation, such as (A + B)^-1, is a chain of sub-problems whose
answers feed each other: z = A + B, then y = z^-1. With an energy trained for each kind of step
(IREM's addition and inverse energies), the energy of the whole problem over all its unknowns is
the sum of the sub-energies,

    E(x, z, y) = E_add((A, B), z) + E_inv(z, y),

and it can be minimised in two ways:

- **sequentially**: descend each node's own energy with its sub-model's trained solver, in order,
  and hand its answer (detached) to the nodes that read it;
- **jointly**: descend every unknown at once. The descent variable is the concatenation [z, y]
  along the answer's last dimension, so any `Solver` (GradientDescent unchanged) descends it. The
  outer energy reads z as its input, so its gradient flows back into z; `input_grad` scales that
  flow (1: the true gradient of the summed energy; 0: each answer moves under its own energy only,
  a simultaneous version of the sequential solve).

A `Plan` describes the computation as data: a list of `Node`s, each naming the sub-energy (its
slot) and which inputs come from the problem (named parts) and which from earlier nodes, so a
depth-k chain is built by a loop (tasks/nested.py). Sub-models are loaded from their own irem-train
runs, frozen, and checked against the shapes of the slot they fill. The same plan runs with direct
predictors (the feed-forward baselines applied in sequence) and with exact operations (the ground
truth of every node), so all three are compared on one structure.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from irem.build import load_run
from irem.energy import EnergyFunction
from irem.predictor import Predictions, Predictor
from irem.problem import Problem, SolveResult, rows_of
from irem.solver import Solver
from irem.task import Task

MODES = ("sequential", "joint")

Wire = Callable[[list[Tensor], Any], Any]


def concat(values: list[Tensor], context: Any) -> Tensor:
    """The default wiring: a node's inputs side by side, one flat row per instance ([A, B] for addition)."""
    return torch.cat([v.reshape(v.shape[0], -1) for v in values], dim=1)


@dataclass(frozen=True)
class Node:
    """One sub-problem of a plan.

    `slot` names the sub-energy that answers it; `inputs` are names of problem parts or of earlier
    nodes, in the order the sub-energy reads them; `wire` turns those values (and the problem's x,
    for layouts such as graph batches) into the sub-energy's x. A wire is fixed and differentiable,
    so in a joint solve the gradient reaches the answers it reads.
    """

    name: str
    slot: str
    inputs: tuple[str, ...]
    wire: Wire = concat


@dataclass(frozen=True)
class Plan:
    """Nodes in the order they can be answered; the last one's answer is the problem's answer."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("Plan: a plan needs at least one node.")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"Plan: node names must be unique, got {names}.")

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    @property
    def slots(self) -> list[str]:
        return list(dict.fromkeys(n.slot for n in self.nodes))

    def check(self, parts: Iterable[str], slots: Iterable[str]) -> None:
        """Every input must be a problem part or an earlier node, every slot a sub-model we have."""
        known, slots = set(parts), set(slots)
        for node in self.nodes:
            if node.slot not in slots:
                raise ValueError(
                    f"Plan: node '{node.name}' needs sub-model '{node.slot}'; valid slots: {', '.join(sorted(slots))}."
                )
            for name in node.inputs:
                if name not in known:
                    raise ValueError(
                        f"Plan: node '{node.name}' reads '{name}', which is neither a problem part nor an earlier "
                        f"node. Valid inputs there: {', '.join(sorted(known))}."
                    )
            if node.name in known:
                raise ValueError(f"Plan: node '{node.name}' has the name of a problem part or an earlier node.")
            known.add(node.name)


class ComposableTask(Task):
    """A task whose problems are plans over sub-problems (tasks/nested.py).

    It says which sub-models it needs and with which shapes (`slots`), the plan of each depth,
    the named inputs of a problem (`parts`), each instance's depth, and the exact operation of each
    slot, so the ground truth of every node can be computed along the same plan.
    """

    @abc.abstractmethod
    def slots(self) -> dict[str, dict[str, int]]:
        """Slot name -> the sizes its sub-model must have (x_dim/y_dim, or edge_dim/y_dim for graphs)."""

    @abc.abstractmethod
    def plan(self, depth: int) -> Plan:
        """The nodes of a problem of this depth."""

    @abc.abstractmethod
    def parts(self, problem: Problem) -> dict[str, Tensor]:
        """The problem's inputs by name, one row per answer row (as node answers are)."""

    @abc.abstractmethod
    def depth_of(self, problem: Problem) -> Tensor:
        """Each instance's depth, read from x alone."""

    @abc.abstractmethod
    def exact(self, slot: str) -> Callable[[Any], Tensor]:
        """The exact operation a slot's sub-model learned: its wired x -> its answer."""


def run_plan(
    plan: Plan, parts: Mapping[str, Tensor], context: Any, answer: Callable[[Node, Any], Tensor]
) -> dict[str, Tensor]:
    """Answer the nodes in order, each answer fed to the nodes that read it: the sequential solve.

    `answer(node, x)` answers one node from its wired x: by descent, by a direct predictor or
    exactly. Returns every node's answer by name.
    """
    values: dict[str, Tensor] = dict(parts)
    for node in plan.nodes:
        x = node.wire([values[name] for name in node.inputs], context)
        values[node.name] = answer(node, x)
    return {node.name: values[node.name] for node in plan.nodes}


# -- sub-models ---------------------------------------------------------------------------------


def model_dims(model: Predictor) -> dict[str, int]:
    """The sizes a model was built with: its energy's for an energy model, its own for a baseline."""
    module = getattr(model, "energy", model)
    return {k: v for k, v in vars(module).items() if k.endswith("_dim") and isinstance(v, int)}


def _shapes(dims: Mapping[str, int]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) + ")"


def check_fits(slot: str, model: Predictor, need: Mapping[str, int], where: str = "") -> None:
    """A sub-model must have exactly the sizes of the slot it fills, or the error names both."""
    got = model_dims(model)
    wrong = {k: v for k, v in need.items() if got.get(k) != v}
    if wrong:
        source = f" from {where}" if where else ""
        raise ValueError(
            f"sub-model {type(getattr(model, 'energy', model)).__name__}{_shapes(got)}{source} does not fit slot "
            f"'{slot}', which needs {_shapes(need)}. Load a run trained on a task with the slot's shapes."
        )


def freeze(model: Predictor) -> Predictor:
    """Sub-models are composed, never retrained: no parameter takes a gradient, eval mode."""
    model.requires_grad_(False)
    model.eval()
    return model


def load_slot(slot: str, run_dir: str | Path, need: Mapping[str, int]) -> Predictor:
    """A trained run (irem.build.load_run) as the frozen sub-model of `slot`, checked against the
    shapes the slot needs."""
    _, _, _, model = load_run(run_dir)
    model = freeze(model)
    check_fits(slot, model, need, str(run_dir))
    return model


def is_energy_model(model: Any) -> bool:
    return isinstance(getattr(model, "energy", None), EnergyFunction) and isinstance(
        getattr(model, "solver", None), Solver
    )


# -- the joint energy ---------------------------------------------------------------------------


def scale_grad(t: Tensor, scale: float) -> Tensor:
    """`t` unchanged forward; its gradient multiplied by `scale` backward."""
    if scale == 1.0:
        return t
    if scale == 0.0:
        return t.detach()
    return t.detach() + scale * (t - t.detach())


@dataclass
class ComposedInput:
    """What a joint descent holds fixed: the problem's parts, its x (for wiring), and the wired
    and prepared x of every node that reads problem parts only."""

    parts: dict[str, Tensor]
    context: Any = None
    prepared: dict[str, Any] = field(default_factory=dict)


class ComposedEnergy(EnergyFunction):
    """E(x, z_1..z_k) = sum over nodes of E_slot(wire(inputs), z_node); y is [z_1, ..., z_k] along its last dim.

    `widths` is each slot's answer width (400 for a 20x20 matrix, 1 for a value per graph edge).
    """

    def __init__(
        self, plan: Plan, energies: Mapping[str, EnergyFunction], widths: Mapping[str, int], input_grad: float = 1.0
    ) -> None:
        super().__init__()
        missing = [s for s in plan.slots if s not in energies or s not in widths]
        if missing:
            raise ValueError(
                f"ComposedEnergy: no energy or width for slot(s) {missing}; given: {', '.join(sorted(energies))}."
            )
        if not 0.0 <= input_grad <= 1.0:
            raise ValueError(f"ComposedEnergy: input_grad must be in [0, 1], got {input_grad}.")
        self.plan = plan
        self.energies = torch.nn.ModuleDict({s: energies[s] for s in plan.slots})
        self.widths = [int(widths[n.slot]) for n in plan.nodes]
        self.input_grad = float(input_grad)

    @property
    def y_dim(self) -> int:
        return sum(self.widths)

    def split(self, y: Tensor) -> dict[str, Tensor]:
        """The answer of every node, as slices of the joint variable."""
        if y.shape[-1] != self.y_dim:
            raise ValueError(
                f"ComposedEnergy: the joint variable must end in {self.y_dim} values "
                f"({' + '.join(map(str, self.widths))}, one block per node), got shape {tuple(y.shape)}."
            )
        return dict(zip([n.name for n in self.plan.nodes], y.split(self.widths, dim=-1), strict=True))

    def prepare(self, x: ComposedInput) -> ComposedInput:
        """Wire and prepare once the nodes whose x does not move during the descent."""
        prepared = {}
        for node in self.plan.nodes:
            if all(name in x.parts for name in node.inputs):
                wired = node.wire([x.parts[name] for name in node.inputs], x.context)
                prepared[node.name] = self.energies[node.slot].prepare(wired)
        return ComposedInput(x.parts, x.context, prepared)

    def energy(self, x: ComposedInput, y: Tensor, step: int = 0) -> Tensor:
        answers = self.split(y)
        total: Tensor | int = 0
        for node in self.plan.nodes:
            if node.name in x.prepared:
                wired = x.prepared[node.name]
            else:
                values = [x.parts[n] if n in x.parts else scale_grad(answers[n], self.input_grad) for n in node.inputs]
                wired = node.wire(values, x.context)
            total = total + self.energies[node.slot].energy(wired, answers[node.name], step)
        return total  # type: ignore[return-value]


# -- solving a plan -----------------------------------------------------------------------------


def init_answers(plan: Plan, rows: int, widths: Mapping[str, int], generator: torch.Generator) -> dict[str, Tensor]:
    """IREM's start, y0 ~ U(-1, 1), for every node, drawn node by node (the same in both modes)."""
    return {n.name: torch.rand(rows, widths[n.slot], generator=generator) * 2 - 1 for n in plan.nodes}


def solve_sequential(
    plan: Plan,
    models: Mapping[str, Predictor],
    parts: Mapping[str, Tensor],
    context: Any,
    budget: int,
    generator: torch.Generator,
    segment: Tensor | None = None,
) -> dict[str, Tensor]:
    """Every node in order: an energy model descends `budget` steps with its own trained solver from
    U(-1, 1); a direct predictor (a feed-forward baseline) answers in one pass."""
    plan.check(parts, models)
    rows = next(iter(parts.values())).shape[0]
    widths = {s: model_dims(models[s])["y_dim"] for s in plan.slots}
    y0 = init_answers(plan, rows, widths, generator)

    def answer(node: Node, x: Any) -> Tensor:
        model = models[node.slot]
        if is_energy_model(model):
            result = model.solver.solve(
                model.energy, x, y0[node.name], budget=budget, segment=segment, generator=generator
            )
            return result.y.detach()
        with torch.no_grad():
            return model(x).reshape(rows, -1)

    return run_plan(plan, parts, context, answer)


def solve_joint(
    plan: Plan,
    models: Mapping[str, Predictor],
    parts: Mapping[str, Tensor],
    context: Any,
    solver: Solver | None,
    budget: int,
    generator: torch.Generator,
    segment: Tensor | None = None,
    input_grad: float = 1.0,
    snapshots: Iterable[int] = (),
    record_history: bool = False,
) -> tuple[SolveResult, ComposedEnergy]:
    """All nodes at once: `solver` descends the composed energy in [z_1, ..., z_k] from the same
    starts the sequential solve uses. Slice the result with `energy.split`."""
    plan.check(parts, models)
    direct = [s for s in plan.slots if not is_energy_model(models[s])]
    if direct:
        raise ValueError(
            f"a joint solve descends energies; the sub-model(s) of slot(s) {direct} predict directly. "
            f"Use mode 'sequential' for them (valid modes: {', '.join(MODES)})."
        )
    if solver is None:
        raise ValueError("a joint solve needs a solver (e.g. GradientDescent at the sub-energies' trained step size).")
    widths = {s: model_dims(models[s])["y_dim"] for s in plan.slots}
    energy = ComposedEnergy(plan, {s: models[s].energy for s in plan.slots}, widths, input_grad)
    rows = next(iter(parts.values())).shape[0]
    y0 = torch.cat(list(init_answers(plan, rows, widths, generator).values()), dim=-1)
    result = solver.solve(
        energy,
        ComposedInput(dict(parts), context),
        y0,
        budget=budget,
        segment=segment,
        snapshots=snapshots,
        record_history=record_history,
        generator=generator,
    )
    return result, energy


class ComposedPredictor(Predictor):
    """A nested task answered by composing trained sub-models along the task's plan.

    `models` maps each slot to a frozen sub-model (energy models; direct predictors for the
    composed feed-forward baseline, sequential only). A budget is the steps per node for a
    sequential solve and the steps of the whole joint descent, so both report the answer after
    that many descent steps of their own kind. The joint solve uses `solver`, by default the trained
    solver of the plan's last node. A batch mixing depths is solved one depth at a time.
    """

    def __init__(
        self,
        models: Mapping[str, Predictor],
        mode: str = "sequential",
        solver: Solver | None = None,
        input_grad: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"ComposedPredictor: unknown mode '{mode}'. Valid modes: {', '.join(MODES)}.")
        if not models:
            raise ValueError("ComposedPredictor: give at least one sub-model (slot name -> model).")
        self.models = torch.nn.ModuleDict(dict(models))
        for model in self.models.values():
            freeze(model)
        self.mode = mode
        self.solver = solver
        self.input_grad = float(input_grad)

    @property
    def default_budget(self) -> int:
        steps = [m.solver.max_steps for m in self.models.values() if is_energy_model(m)]
        return max(steps, default=1)

    def check(self, task: ComposableTask) -> None:
        """Every slot the task needs has a sub-model of the right shapes."""
        needed = task.slots()
        missing = [s for s in needed if s not in self.models]
        if missing:
            raise ValueError(
                f"ComposedPredictor: task '{task.name}' needs sub-models for slot(s) {missing}; "
                f"given: {', '.join(sorted(self.models))}."
            )
        for slot, need in needed.items():
            check_fits(slot, self.models[slot], need)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError(
            "A composed model is built from trained sub-models and is never trained itself; "
            "train each sub-model with irem-train and load it with load_slot."
        )

    def solve(
        self, task: ComposableTask, problem: Problem, depth: int, budgets: Sequence[int], generator: torch.Generator
    ) -> dict[str, Tensor]:
        """Answers (output node) after each budget for a batch of one depth; "best" for a joint solve."""
        plan, parts = task.plan(depth), task.parts(problem)
        if self.mode == "sequential":
            return {
                str(b): solve_sequential(plan, self.models, parts, problem.x, b, generator, problem.segment)[
                    plan.output
                ]
                for b in budgets
            }
        solver = self.solver or getattr(self.models[plan.nodes[-1].slot], "solver", None)
        result, energy = solve_joint(
            plan,
            self.models,
            parts,
            problem.x,
            solver,
            max(budgets),
            generator,
            problem.segment,
            self.input_grad,
            budgets,
        )
        out = {str(b): energy.split(result.snapshots[b])[plan.output] for b in budgets}
        out["best"] = energy.split(result.best_y)[plan.output]
        return out

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        if not isinstance(task, ComposableTask):
            raise TypeError(
                f"ComposedPredictor answers a ComposableTask (plans over sub-problems); '{task.name}' is not one."
            )
        self.check(task)
        wanted = sorted({int(b) for b in budgets})
        if not wanted or wanted[0] < 0:
            raise ValueError(f"ComposedPredictor.predict: budgets must be non-empty and >= 0, got {list(budgets)}.")
        depths = task.depth_of(problem)
        n = problem.num_instances
        answers: dict[str, Tensor] = {}
        steps: dict[str, float] = {}
        for depth in torch.unique(depths).tolist():
            index = torch.nonzero(depths == depth).flatten()
            whole = index.numel() == n
            part = problem if whole else problem.select(index)
            rows = index if problem.segment is None else rows_of(problem.segment, index, n)[0]
            for label, y in self.solve(task, part, int(depth), wanted, generator).items():
                if label not in answers:
                    answers[label] = torch.zeros(task.answer_shape(problem), dtype=y.dtype)
                answers[label][rows] = y.reshape(answers[label][rows].shape)
        for b in wanted:
            per_node = depths.float() * b if self.mode == "sequential" else torch.full((n,), float(b))
            steps[str(b)] = float(per_node.mean())
        return Predictions(answers=answers, info={"steps_mean": steps})
