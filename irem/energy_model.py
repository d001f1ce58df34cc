"""An energy model as a `Predictor`: energy + solver + training objective + replay buffer.

It is the piece that lets the generic trainer and evaluation treat "descend a learned energy"
exactly like a baseline network.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.errors import SettingError
from irem.objective import Objective, TrainingBatch
from irem.predictor import Predictions, Predictor
from irem.problem import Problem, SolveResult
from irem.replay import ReplayBuffer, from_replay, replay_items
from irem.solver import Solver
from irem.task import Task


def solve_problem(
    task: Task,
    energy: EnergyFunction,
    solver: Solver,
    problem: Problem,
    y0: Tensor,
    budget: int,
    snapshots: Sequence[int],
    generator: torch.Generator,
) -> SolveResult:
    """Descend `energy` with `solver` on `problem` from `y0`: the one place a problem meets a solver
    (its answer rows, fixed entries and projection; fresh starts drawn as the task starts, for
    best-of-N; the task's check, for halting or picking on a verified answer). A model's predict
    (evaluation, generation) and a study's sweep all solve through it."""

    def init(index: Tensor) -> Tensor:  # fresh starts for instances `index`, drawn as the task starts
        return task.init_answer(problem.select(index), generator).to(problem.device)

    def verify(index: Tensor, y: Tensor) -> Tensor:  # the task's check of answers for instances `index`
        return task.check(problem.select(index), y)

    return solver.solve(
        energy,
        problem.x,
        y0,
        budget=budget,
        segment=problem.segment,
        constraint=problem.constraint,
        snapshots=snapshots,
        generator=generator,
        init=init,
        verify=verify,
    )


class EnergyModel(Predictor):
    """Trains `energy` through `solver` with `objective`; answers by descent and verifies by lowest energy.

    The objective (IREM's: objectives/irem.py) is a plug-in, built from the config group
    `objective/`. The replay buffer keeps the final
    iterates of the objective's descent, and later batches continue from them.
    """

    honours_constraint = True  # the descent applies the constraint to the start and after every step

    def __init__(
        self,
        energy: EnergyFunction,
        solver: Solver,
        objective: Objective,
        replay_capacity: int = 10_000,
        replay_fraction: float = 0.5,
        step_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 <= replay_fraction < 1:
            raise ValueError(f"EnergyModel: replay_fraction must be in [0, 1), got {replay_fraction}.")
        if step_lr_multiplier <= 0:
            raise ValueError(f"EnergyModel: step_lr_multiplier must be positive, got {step_lr_multiplier}.")
        if not isinstance(objective, Objective):
            raise TypeError(f"EnergyModel: objective must be an irem Objective, got {type(objective).__name__}.")
        objective.check_energy(energy)
        solver = solver.for_energy(energy)
        steps = getattr(solver, "max_steps", None)
        if isinstance(steps, int) and steps < 1:  # before training, not as an autograd error at its first step
            raise SettingError(
                f"solver.max_steps={steps} is out of range: the energy model trains through a descent of "
                "solver.max_steps steps, so it must be a whole number >= 1 (0 leaves nothing to differentiate); "
                "e.g. solver.max_steps=10. Budgets at inference are eval.budgets, where 0 (the start) is allowed."
            )
        self.energy = energy
        self.solver = solver
        self.objective = objective
        self.replay = ReplayBuffer(replay_capacity)
        self.replay_fraction = float(replay_fraction)
        self.step_lr_multiplier = float(step_lr_multiplier)
        self._warned_no_replay = False

    def use_solver(self, solver: Solver) -> None:
        """Descend with `solver` from now on (irem-eval solver=..., a study's solvers): a wrapper
        configured without a descent wraps the trained one, keeping its step size, and the solver
        takes what it reads from the energy."""
        self.solver = solver.with_base(self.solver).for_energy(self.energy)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The solver's parameters (a learnable step size) at `step_lr_multiplier` times the energy's
        learning rate (EBT): one scalar step size moves far slower than it should at a learning rate
        tuned for millions of weights."""
        energy = [p for p in self.energy.parameters() if p.requires_grad]
        solver = [p for p in self.solver.parameters() if p.requires_grad]
        groups = [{"params": energy, "lr": lr}]
        if solver:
            groups.append({"params": solver, "lr": lr * self.step_lr_multiplier})
        return groups

    @property
    def default_budget(self) -> int:
        return self.solver.max_steps

    def _with_replay(self, task: Task, problem: Problem, generator: torch.Generator) -> tuple[Problem, Tensor]:
        """Swap part of a fresh batch for stored, partially solved units (instances, or whatever the
        task stores: text keeps whole windows)."""
        y0 = task.init_answer(problem, generator).to(problem.device)
        if not self.replay.capacity or len(self.replay) == 0:
            return problem, y0
        fresh = replay_items(task, problem, y0)
        if fresh is None:
            return problem, y0
        units = next(iter(fresh.values())).shape[0]
        k = int(units * self.replay_fraction)
        if k == 0 or len(self.replay) < k:
            return problem, y0
        old = self.replay.sample(k, generator)
        mixed = {key: torch.cat([v[: units - k], old[key].to(v.device)]) for key, v in fresh.items()}
        return from_replay(task, mixed, None if problem.constraint is None else problem.constraint.project)

    def _remember(self, task: Task, problem: Problem, y: Tensor) -> None:
        if not self.replay.capacity:
            return
        items = replay_items(task, problem, y.detach())
        if items is None:
            if not self._warned_no_replay:
                warnings.warn(
                    f"Task '{task.name}' has no replay format for its problems; training without a replay "
                    "buffer (set model.replay_capacity=0 to say so and silence this).",
                    stacklevel=2,
                )
                self._warned_no_replay = True
            return
        self.replay.add(**items)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        fresh = problem
        problem, y0 = self._with_replay(task, problem, generator)
        batch = TrainingBatch(problem=problem, y0=y0, fresh=fresh)
        out = self.objective.loss(task, self.energy, self.solver, batch, generator)
        logs: dict[str, float] = {}
        if out.result is not None:
            self._remember(task, problem, out.result.y)
            logs["diverged"] = out.result.summary()["diverged"]
        step_size = self.solver.step_size
        if step_size is not None:
            logs["step_size"] = float(step_size.detach().mean())
        logs.update(out.logs)
        return out.loss, logs

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        budgets = sorted({int(b) for b in budgets})
        y0 = task.init_answer(problem, generator).to(problem.device)

        def solve(budget: int, snapshots: list[int]) -> SolveResult:
            return solve_problem(task, self.energy, self.solver, problem, y0, budget, snapshots, generator)

        result = solve(max(budgets), budgets if self.solver.snapshots_match_budgets else [max(budgets)])
        # a solver whose shorter budgets take another path (an annealed one) solves each one on its own
        answers = {
            str(b): result.snapshots[b] if b in result.snapshots else solve(b, [b]).snapshots[b] for b in budgets
        }
        answers["best"] = result.best_y
        info = {"steps": result.steps, "status": result.status, "best_step": result.best_step, **result.summary()}
        if result.evaluations is not None:
            info["evaluations"] = result.evaluations
        if result.landscape is not None:
            info["landscape"] = result.landscape
        return Predictions(answers=answers, info=info)
