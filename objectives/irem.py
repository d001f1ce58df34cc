"""Training objectives: functions of (task, energy, solver, problem).

`irem_loss` is IREM's: run the solver from y0 with the graph kept on its last steps (the
solver's truncation) and take the task loss of the final iterate, or of every iterate with
`step_supervision`. Diverged instances are left out of the loss so one bad instance cannot
poison a batch's gradient.

`input_stationarity_loss` is an optional extra for energies meant to be composed
(irem/composition.py): IREM's objective shapes the energy in y only, so at a true pair (x, y*) the
energy may still slope steeply in x. A joint descent, which also moves x when x is an inner answer,
then walks away from the truth even when started on it. The term asks the true pair to be
stationary in x too.
"""

from __future__ import annotations

import copy

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


def input_stationarity_loss(energy: EnergyFunction, problem: Problem, step_size: float | Tensor) -> Tensor:
    """Mean squared move, step_size * dE/dx, that one descent step would make on the input at (x, y*).

    In the units of the task's MSE: how far a joint descent would push a correct inner answer
    on its first step. Zero means the true pair is a stationary point in x as well as in y. The
    input is x itself for dense problems (one row per instance) and the edge values (`edge_attr`)
    for graph batches, which is where composition feeds inner answers; anything else is refused.
    """
    x, target = problem.x, problem.target
    with torch.enable_grad():
        if isinstance(x, Tensor) and x.dim() >= 2 and x.shape[0] == problem.num_instances:
            leaf = x.detach().requires_grad_(True)
            inputs = leaf
        elif isinstance(getattr(x, "edge_attr", None), Tensor):
            leaf = x.edge_attr.detach().float().requires_grad_(True)
            inputs = copy.copy(x)  # shares the structure tensors, as tasks/nested.with_edge_attr does
            inputs.edge_attr = leaf
        else:
            inputs = None
        if inputs is None or target is None:
            raise ValueError(
                "input_stationarity needs a target and an x that is a tensor with one row per instance or a "
                f"graph batch with edge_attr; got x of type {type(x).__name__}."
            )
        (grad,) = torch.autograd.grad(energy.energy(inputs, target).sum(), leaf, create_graph=True)
    return ((step_size * grad) ** 2).mean()
