"""IREM's training objective: the task loss of the final descent iterate (objective=irem).

The solver runs from y0 with the graph kept on its last steps (its truncation) and the task loss
of the final iterate is minimised, or of every kept iterate with `step_supervision` (EBT).
Diverged instances are left out of the loss so one bad instance cannot poison a batch's gradient.

`input_stationarity` > 0 adds an optional term for energies meant to be composed
(irem/composition.py): IREM's loss shapes the energy in y only, so at a true pair (x, y*) the
energy may still slope steeply in x. A joint descent, which also moves x when x is an inner answer,
then walks away from the truth even when started on it. The term asks the true pair to be
stationary in x too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.objective import Objective, ObjectiveResult, TrainingBatch
from irem.problem import ContinuousInput, Problem, Status, input_values, with_input_values
from irem.solver import Solver
from irem.task import Task


class IREMObjective(Objective):
    """Final-step task loss through the solver's differentiable descent (IREM, Du et al. 2022)."""

    def __init__(self, step_supervision: bool = False, input_stationarity: float = 0.0) -> None:
        if input_stationarity < 0:
            raise ValueError(f"IREMObjective: input_stationarity must be >= 0, got {input_stationarity}.")
        self.step_supervision = bool(step_supervision)
        self.input_stationarity = float(input_stationarity)

    def loss(
        self, task: Task, energy: EnergyFunction, solver: Solver, batch: TrainingBatch, generator: torch.Generator
    ) -> ObjectiveResult:
        problem = batch.problem
        result = solver.solve(
            energy,
            problem.x,
            batch.y0,
            segment=problem.segment,
            constraint=problem.constraint,
            differentiable=True,
            record_trajectory=self.step_supervision,
            generator=generator,
        )
        ok = result.status != int(Status.DIVERGED)
        if self.step_supervision:
            iterates = [y for y in result.trajectory[1:] if y.requires_grad] or [result.y]
            per_instance = torch.stack([task.loss(problem, y) for y in iterates]).mean(0)
        else:
            per_instance = task.loss(problem, result.y)
        per_instance = torch.where(ok, per_instance, torch.zeros_like(per_instance))
        loss = per_instance.sum() / ok.sum().clamp_min(1)
        logs: dict[str, float] = {}
        if self.input_stationarity > 0:  # at the fresh batch's true answers
            step_size = solver.step_size
            step_size = 1.0 if step_size is None else step_size.detach()
            moved = input_stationarity_loss(energy, batch.fresh, step_size)
            loss = loss + self.input_stationarity * moved
            logs["input_stationarity"] = float(moved.detach())
        return ObjectiveResult(loss=loss, result=result, logs=logs)


def input_stationarity_loss(energy: EnergyFunction, problem: Problem, step_size: float | Tensor) -> Tensor:
    """Mean squared move, step_size * dE/dx, that one descent step would make on the input at (x, y*).

    In the units of the task's MSE: how far a joint descent would push a correct inner answer
    on its first step. Zero means the true pair is a stationary point in x as well as in y. The
    input is x itself for a tensor with one row per instance, and an input's continuous values
    (irem.problem.ContinuousInput: a graph batch's edge values) otherwise, which is where
    composition feeds inner answers; anything else is refused.
    """
    x, target = problem.x, problem.target
    dense = isinstance(x, Tensor) and x.dim() >= 2 and x.shape[0] == problem.num_instances
    if target is None or not (dense or isinstance(x, ContinuousInput)):
        raise ValueError(
            "input_stationarity needs a target and an x that is a tensor with one row per instance or an input "
            f"with continuous values (irem.problem.ContinuousInput); got x of type {type(x).__name__}."
        )
    with torch.enable_grad():
        leaf = input_values(x).detach()
        leaf = (leaf if dense else leaf.float()).requires_grad_(True)
        inputs = leaf if dense else with_input_values(x, leaf)  # shares the structure tensors
        (grad,) = torch.autograd.grad(energy.energy(inputs, target).sum(), leaf, create_graph=True)
    return ((step_size * grad) ** 2).mean()
