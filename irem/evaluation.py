"""Evaluation of a trained predictor over fixed splits, fresh difficulty levels and step budgets.

One solve per set runs to the largest budget and snapshots the smaller ones, which equals
separate runs for a deterministic solver. The sets are the task's fixed splits (`test`,
`harder`...) and, for `levels`, fresh seeded sets at those difficulty levels, drawn as irem-study
draws them (irem/problem_sets.py) and named "level <value>". Each row is one (set, budget,
metric): the mean and median over instances, and two numbers of the set's one solve, repeated on
its rows so the CSV stays flat: `steps_mean`, the steps it used per instance (an adaptive solver's
own count, a fixed one's largest budget, a baseline's own), and `solve_seconds`, the wall-clock of
the whole solve that answered every budget at once (not a time per budget). Each row also counts
the instances that, at its budget, had `diverged` (energy or gradient no longer finite; their
answer is the last finite iterate) and that were still moving (`max_steps`: a solve of that budget
would have stopped them at its cap), so a mean over partly diverged instances is never read as a
plain error; a predictor without per-instance solve records (a baseline) has null counts. A
predictor that gave every budget the one same answer (`ignores_budget`) is shown in one column.
irem/records.py writes the rows and irem/tables.py prints them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from irem.budgets import DEFAULT_BUDGETS
from irem.predictor import Predictions, Predictor, check_budgets, predict_constrained
from irem.problem import Problem, Status
from irem.problem_sets import level_name, levels_to_use, make_sets
from irem.seeds import eval_generator
from irem.task import Task


@runtime_checkable
class EvalBatching(Protocol):
    """What a task defines when evaluation cannot cut its instances one by one (a text window holds
    `unit_size` predicted tokens): sub-batches of about `batch_size` instances along its own units."""

    unit_size: int

    def eval_batches(self, problem: Problem, batch_size: int) -> Iterator[Problem]: ...


def eval_batches(task: Task, problem: Problem, batch_size: int) -> Iterator[Problem]:
    """Consecutive sub-batches of about `batch_size` instances, together every instance once, in
    order: the task's own cut, else instance by instance."""
    if isinstance(task, EvalBatching):
        yield from task.eval_batches(problem, batch_size)
        return
    n = problem.num_instances
    for lo in range(0, n, batch_size):
        yield problem.select(torch.arange(lo, min(lo + batch_size, n)))


def unit_size(task: Task) -> int:
    """Instances per unit that `generate(n)` counts: 1, or the instances a unit holds (a text window)."""
    return task.unit_size if isinstance(task, EvalBatching) else 1


def level_set_name(level: float) -> str:
    """The row name of a fresh set at a difficulty level: "level 0.2"."""
    return f"level {level_name(level)}"


def steps_used(preds: Predictions) -> float:
    """The mean steps the solve used per instance: an energy model's per-instance `steps` (an
    adaptive solver's own stopping), else the most a predictor reports for any of its budgets."""
    steps = preds.info.get("steps")
    if isinstance(steps, torch.Tensor):
        return float(steps.double().mean())
    per_budget = preds.info.get("steps_mean") or {}
    return max((float(v) for v in per_budget.values()), default=float("nan"))


def answers_ignore_budget(preds: Predictions) -> bool:
    """Whether every budget got the one same answer (a feed-forward net returns one tensor for all):
    the table then shows one column, not the same number under every `steps N`."""
    answers = [y for label, y in preds.answers.items() if label.isdigit()]
    return len(answers) > 1 and all(y is answers[0] for y in answers[1:])


def status_counts(preds: Predictions, budgets: Sequence[int]) -> dict[str, tuple[int, int]] | None:
    """(diverged, max_steps) instance counts per answer label, or None without per-instance records.

    One solve runs to the largest budget, so its status is what that budget (and "best") reports.
    A smaller budget b reads it through each instance's steps: an instance diverged at step t <= b
    counts as diverged at b, one that stopped on a halting rule before b as converged, and every
    other one was still moving at b, which a b-step solve reports as max_steps. (A best-of-N solve
    counts the steps of all its starts, so there the smaller budgets' split is approximate.)
    """
    status, steps = preds.info.get("status"), preds.info.get("steps")
    if not isinstance(status, torch.Tensor) or not isinstance(steps, torch.Tensor):
        return None
    status, steps = status.cpu(), steps.cpu()
    diverged = status == int(Status.DIVERGED)
    final = (int(diverged.sum()), int((status == int(Status.MAX_STEPS)).sum()))
    largest = max(int(b) for b in budgets)
    counts = {}
    for label in preds.answers:
        if not label.isdigit() or int(label) >= largest:
            counts[label] = final
            continue
        b = int(label)
        gone = diverged & (steps <= b)
        converged = (status == int(Status.CONVERGED)) & (steps < b)
        counts[label] = (int(gone.sum()), int((~gone & ~converged).sum()))
    return counts


def evaluate_set(
    task: Task,
    model: Predictor,
    name: str,
    problem: Problem,
    budgets: Sequence[int],
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """The rows of one set (see the module): every budget (and "best") x every metric."""
    g = eval_generator(seed, name)
    per_instance: dict[tuple[str, str], list[torch.Tensor]] = {}
    counts: dict[str, list[int]] | None = {}
    steps, seconds, ignores_budget = 0.0, 0.0, True
    for part in eval_batches(task, problem, batch_size):
        part = part.to(device)
        start = time.perf_counter()
        preds = predict_constrained(model, task, part, budgets, g)
        seconds += time.perf_counter() - start
        steps += steps_used(preds) * part.num_instances
        ignores_budget = ignores_budget and answers_ignore_budget(preds)
        part_counts = status_counts(preds, budgets)
        if part_counts is None or counts is None:
            counts = None
        else:
            for label, (div, cap) in part_counts.items():
                total = counts.setdefault(label, [0, 0])
                total[0] += div
                total[1] += cap
        for label, y in preds.answers.items():
            for metric, values in task.metrics(part, y).items():
                per_instance.setdefault((label, metric), []).append(values.detach().double().cpu())
    n = problem.num_instances
    rows = []
    for (label, metric), parts in per_instance.items():
        values = torch.cat(parts)
        rows.append(
            {
                "split": name,
                "budget": label,
                "metric": metric,
                "value": float(values.sum()) / n,
                # a few unstable instances can move the mean (inverse: one instance diverging
                # at 80 steps moved the test MSE by 18%); the median shows the typical one
                "median": float(values.median()),
                "n": n,
                "steps_mean": steps / n,
                "solve_seconds": seconds,
                "diverged": None if counts is None else counts[label][0],
                "max_steps": None if counts is None else counts[label][1],
                "ignores_budget": ignores_budget,
            }
        )
    return rows


def evaluate(
    task: Task,
    model: Predictor,
    splits: Sequence[str] = ("test", "harder"),
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    levels: Sequence[float] = (),
    instances: int | None = None,
) -> list[dict[str, Any]]:
    """Rows of {split, budget, metric, value (the mean over instances), median, n, steps_mean,
    solve_seconds, diverged, max_steps} for every split, then every level (`instances` each, default the task's
    test_size); `budget` is a step count or "best"."""
    check_budgets(budgets, owner="evaluate")
    sets = [(split, task.split(split)) for split in splits]
    if levels:
        n = task.test_size if instances is None else int(instances)
        fresh = make_sets(task, levels_to_use(task, levels), n, seed, mixed=False)
        sets += [(level_set_name(s.level), s.problem) for s in fresh]
    model.eval()
    try:
        return [
            row
            for name, problem in sets
            for row in evaluate_set(task, model, name, problem, budgets, seed, batch_size, device)
        ]
    finally:
        model.train()
