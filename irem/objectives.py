"""Training objectives: functions of (task, energy, solver, problem).

`irem_loss` is IREM's: run the solver from y0 with the graph kept on its last steps (the
solver's truncation) and take the task loss of the final iterate, or of every iterate with
`step_supervision`. Diverged instances are left out of the loss so one bad instance cannot
poison a batch's gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import Problem, SolveResult, Status
from irem.solver import Solver
from irem.task import Task


def irem_loss(
    task: Task,
    energy: EnergyFunction,
    solver: Solver,
    problem: Problem,
    y0: Tensor,
    generator: torch.Generator,
    step_supervision: bool = False,
) -> tuple[Tensor, SolveResult]:
    result = solver.solve(
        energy,
        problem.x,
        y0,
        segment=problem.segment,
        differentiable=True,
        record_trajectory=step_supervision,
        generator=generator,
    )
    ok = result.status != int(Status.DIVERGED)
    if step_supervision:
        iterates = [y for y in result.trajectory[1:] if y.requires_grad] or [result.y]
        per_instance = torch.stack([task.loss(problem, y) for y in iterates]).mean(0)
    else:
        per_instance = task.loss(problem, result.y)
    per_instance = torch.where(ok, per_instance, torch.zeros_like(per_instance))
    loss = per_instance.sum() / ok.sum().clamp_min(1)
    return loss, result
