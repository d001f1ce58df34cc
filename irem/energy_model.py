"""An energy model as a `Predictor`: energy + solver + IREM objective + replay buffer.

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
from irem.objectives import input_stationarity_loss, irem_loss
from irem.predictor import Predictions, Predictor
from irem.problem import Problem
from irem.replay import ReplayBuffer
from irem.solver import Solver
from irem.task import Task


class EnergyModel(Predictor):
    """Trains `energy` through `solver`; answers by descent and verifies by lowest energy.

    `input_stationarity` > 0 adds that weight times `objectives.input_stationarity_loss` at the
    solver's step size, for energies that joint composition will also descend in their inputs.
    """

    def __init__(
        self,
        energy: EnergyFunction,
        solver: Solver,
        replay_capacity: int = 10_000,
        replay_fraction: float = 0.5,
        step_supervision: bool = False,
        step_lr_multiplier: float = 1.0,
        input_stationarity: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= replay_fraction < 1:
            raise ValueError(f"EnergyModel: replay_fraction must be in [0, 1), got {replay_fraction}.")
        if step_lr_multiplier <= 0:
            raise ValueError(f"EnergyModel: step_lr_multiplier must be positive, got {step_lr_multiplier}.")
        if input_stationarity < 0:
            raise ValueError(f"EnergyModel: input_stationarity must be >= 0, got {input_stationarity}.")
        self.energy = energy
        self.solver = solver
        self.replay = ReplayBuffer(replay_capacity)
        self.replay_fraction = float(replay_fraction)
        self.step_supervision = bool(step_supervision)
        self.step_lr_multiplier = float(step_lr_multiplier)
        self.input_stationarity = float(input_stationarity)
        self._warned_no_replay = False

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
        fresh = task.replay_items(problem, y0)
        if fresh is None:
            return problem, y0
        units = next(iter(fresh.values())).shape[0]
        k = int(units * self.replay_fraction)
        if k == 0 or len(self.replay) < k:
            return problem, y0
        old = self.replay.sample(k, generator)
        mixed = {key: torch.cat([v[: units - k], old[key].to(v.device)]) for key, v in fresh.items()}
        return task.from_replay(mixed)

    def _remember(self, task: Task, problem: Problem, y: Tensor) -> None:
        if not self.replay.capacity:
            return
        items = task.replay_items(problem, y.detach())
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
        loss, result = irem_loss(task, self.energy, self.solver, problem, y0, generator, self.step_supervision)
        self._remember(task, problem, result.y)
        logs = {"diverged": result.summary()["diverged"]}
        step_size = getattr(self.solver, "step_size", None)
        if isinstance(step_size, Tensor):
            step_size = step_size.detach()
            logs["step_size"] = float(step_size.mean())
        if self.input_stationarity > 0:  # at the fresh batch's true answers
            moved = input_stationarity_loss(self.energy, fresh, 1.0 if step_size is None else step_size)
            loss = loss + self.input_stationarity * moved
            logs["input_stationarity"] = float(moved.detach())
        return loss, logs

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        budgets = sorted({int(b) for b in budgets})
        y0 = task.init_answer(problem, generator).to(problem.device)
        result = self.solver.solve(
            self.energy,
            problem.x,
            y0,
            budget=max(budgets),
            segment=problem.segment,
            snapshots=budgets,
            generator=generator,
        )
        answers = {str(b): result.snapshots[b] for b in budgets}
        answers["best"] = result.best_y
        info = {"steps": result.steps, "status": result.status, "best_step": result.best_step, **result.summary()}
        return Predictions(answers=answers, info=info)
