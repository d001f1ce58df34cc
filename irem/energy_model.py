"""An energy model as a `Predictor`: energy + solver + IREM objective + replay buffer.

It is the piece that lets the generic trainer and evaluation treat "descend a learned energy"
exactly like a baseline network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.objectives import irem_loss
from irem.predictor import Predictions, Predictor
from irem.problem import Problem
from irem.replay import ReplayBuffer
from irem.solver import Solver
from irem.task import Task


class EnergyModel(Predictor):
    """Trains `energy` through `solver`; answers by descent and verifies by lowest energy."""

    def __init__(
        self,
        energy: EnergyFunction,
        solver: Solver,
        replay_capacity: int = 10_000,
        replay_fraction: float = 0.5,
        step_supervision: bool = False,
        step_lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 <= replay_fraction < 1:
            raise ValueError(f"EnergyModel: replay_fraction must be in [0, 1), got {replay_fraction}.")
        if step_lr_multiplier <= 0:
            raise ValueError(f"EnergyModel: step_lr_multiplier must be positive, got {step_lr_multiplier}.")
        self.energy = energy
        self.solver = solver
        self.replay = ReplayBuffer(replay_capacity)
        self.replay_fraction = float(replay_fraction)
        self.step_supervision = bool(step_supervision)
        self.step_lr_multiplier = float(step_lr_multiplier)

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
        """Swap part of a fresh batch for stored, partially solved instances."""
        y0 = task.init_answer(problem, generator).to(problem.device)
        k = int(problem.num_instances * self.replay_fraction)
        if k == 0 or len(self.replay) < k:
            return problem, y0
        if problem.segment is not None or not isinstance(problem.x, Tensor):
            raise NotImplementedError(
                "The replay buffer stores dense problems only; set model.replay_capacity=0 for this task."
            )
        old = self.replay.sample(k, generator)
        keep = problem.num_instances - k
        fresh = problem.select(torch.arange(keep))
        mixed = Problem(
            x=torch.cat([fresh.x, old["x"]]),
            target=torch.cat([fresh.target, old["target"]]),
            difficulty=None,
        )
        return mixed, torch.cat([y0[:keep], old["y"]])

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        problem, y0 = self._with_replay(task, problem, generator)
        loss, result = irem_loss(task, self.energy, self.solver, problem, y0, generator, self.step_supervision)
        if self.replay.capacity and problem.segment is None and isinstance(problem.x, Tensor):
            self.replay.add(x=problem.x, y=result.y.detach(), target=problem.target)
        logs = {"diverged": result.summary()["diverged"]}
        step_size = getattr(self.solver, "step_size", None)
        if isinstance(step_size, Tensor):
            logs["step_size"] = float(step_size.detach().mean())
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
