"""Plumbing shared by the direct-prediction baselines: argument checks and flat tensors.

Every baseline here reads a fixed-size problem as one flat vector per instance and writes one flat
answer, so the checks that turn a wrong task or a bad argument into a clear message live once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from irem.networks.mlp import make_activation
from irem.predictor import Predictions
from irem.problem import Problem
from irem.task import Task


def check_sizes(owner: str, **sizes: int) -> None:
    """Sizes must be whole numbers >= 1; a zero width would build a network that cannot learn."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}.")


def flat_input(owner: str, x_dim: int, task: Task, problem: Problem) -> Tensor:
    """`problem.x` as [N, x_dim]: these baselines see an instance as one fixed-size vector."""
    x = problem.x
    if problem.segment is not None or not isinstance(x, Tensor):
        raise NotImplementedError(
            f"{owner} reads a dense tensor x with one row per instance; task '{task.name}' gives x of type "
            f"{type(x).__name__}{' with a segment' if problem.segment is not None else ''}."
        )
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != x_dim:
        raise ValueError(
            f"{owner}(x_dim={x_dim}) got x of shape {tuple(x.shape)} from task '{task.name}' "
            f"({flat.shape[1]} values per instance); build it with the task's dims {task.dims()}."
        )
    return flat.float()


def answer_shape(owner: str, y_dim: int, task: Task, problem: Problem) -> tuple[int, ...]:
    """The task's answer shape, checked against the flat `y_dim` the network writes."""
    shape = tuple(task.answer_shape(problem))
    per_instance = math.prod(shape[1:])
    if shape[0] != problem.num_instances or per_instance != y_dim:
        raise ValueError(
            f"{owner}(y_dim={y_dim}) cannot write answers of shape {shape} for task '{task.name}' "
            f"({problem.num_instances} instances); build it with the task's dims {task.dims()}."
        )
    return shape


def keep_fixed(problem: Problem, y: Tensor) -> Tensor:
    """An answer with the problem's fixed entries (givens, observed entries) set, as every solver of
    an energy model keeps them: a direct predictor is judged on the same terms."""
    return y if problem.constraint is None else problem.constraint.apply(y)


def mean_loss(task: Task, problem: Problem, y: Tensor, shape: tuple[int, ...] | None = None) -> Tensor:
    """The task's own per-instance loss, averaged: any continuous-answer task trains as it defines.

    `shape` is the answer's shape when the predictor works on a flat view of it.
    """
    return task.loss(problem, y if shape is None else y.reshape(shape)).mean()


def iterates_loss(
    task: Task, problem: Problem, ys: list[Tensor], shape: tuple[int, ...] | None, every_step: bool
) -> tuple[Tensor, dict[str, float]]:
    """Loss of an iterative predictor: the last iterate's, or the mean over all iterates."""
    final = mean_loss(task, problem, ys[-1], shape)
    if not every_step:
        return final, {}
    loss = torch.stack([mean_loss(task, problem, y, shape) for y in ys]).mean()
    return loss, {"loss_final": float(final.detach())}


def budget_predictions(iterates: Iterable[Tensor], wanted: list[int], shape: tuple[int, ...] | None) -> Predictions:
    """The iterates after each budget in `wanted`; `iterates` yields y after 0, 1, 2... steps.

    Evaluation leaves autograd on (descent needs it); a direct predictor does not, so the
    iterates are drawn without a graph.
    """
    keep = set(wanted)
    answers: dict[str, Tensor] = {}
    with torch.no_grad():
        for t, y in enumerate(iterates):
            if t in keep:
                answers[str(t)] = y if shape is None else y.reshape(shape)
    return Predictions(answers=answers, info={"steps_mean": {str(b): float(b) for b in wanted}})


def check_activation(owner: str, name: str) -> None:
    """Fail at construction, naming the baseline, rather than deep inside `mlp`."""
    try:
        make_activation(name)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None
