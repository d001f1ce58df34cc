"""Fresh, seeded problem sets at chosen difficulty levels: irem-study's sets and irem-eval's `eval.levels`.

A level is the value `task.generate` takes (the inverse task's diagonal shift c, a graph's node
count). Each level's set is drawn from a generator of its own, keyed by the seed and the level's
name, so a level's instances do not depend on which other levels are asked for; a "mixed" set
draws each instance's level from the list, as a real workload would. These sets are not the
task's fixed splits (irem/task.py): they exist to ask "how does the answer change with
difficulty" at levels the splits do not cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from irem.errors import SettingError
from irem.problem import Problem
from irem.seeds import set_generator
from irem.task import Task


class LevelError(SettingError):
    """Levels a command cannot use (a level the task rejects, a task without levels); the message
    names the valid ones, and the commands print it without a traceback."""


@dataclass
class LevelSet:
    """The instances of one difficulty level (or of the mixed set: each its own drawn level)."""

    name: str
    level: float | None  # None for the mixed set
    problem: Problem
    levels: Tensor  # the level of each instance
    difficulty: Tensor  # what the task records per instance (condition number, node count), else the level


def level_name(level: float) -> str:
    """How a level names its set ("0.2"), in records, tables and the generator's key."""
    return f"{level:g}"


def levels_to_use(task: Task, levels: Sequence[float] | None) -> list[float]:
    """The levels given, else the task's `study_levels`, else the levels of its own splits."""
    if task.level_label is None:
        raise LevelError(
            f"Task '{task.name}' has no difficulty levels (its generate ignores the level); "
            f"evaluate its splits instead: {', '.join(task.split_levels())}."
        )
    if levels is None:
        levels = task.study_levels
    if levels is None:
        levels = [v for v in dict.fromkeys(task.split_levels().values()) if v is not None]
    out = [float(v) for v in levels]
    if not out:
        raise LevelError("levels is empty; give at least one difficulty level, e.g. levels=[0.5,0.1].")
    names = [level_name(v) for v in out]
    if len(set(names)) != len(names):
        raise LevelError(f"levels has repeated values: {out}.")
    return out


def _generate(task: Task, n: int, level: Tensor, generator: torch.Generator, shown: str) -> Problem:
    try:
        return task.generate(n, level, generator)
    except (ValueError, RuntimeError) as err:
        splits = ", ".join(f"{k}={v:g}" for k, v in task.split_levels().items() if v is not None)
        raise LevelError(
            f"Difficulty level {shown} is rejected by task '{task.name}': {err} "
            f"Valid levels are values task.generate accepts; the task's own splits use {splits}."
        ) from err


def _difficulty(problem: Problem, levels: Tensor) -> Tensor:
    d = problem.difficulty
    return levels.clone() if d is None else d.detach().float().cpu().reshape(-1)


def make_sets(task: Task, levels: Sequence[float], instances: int, seed: int, mixed: bool = True) -> list[LevelSet]:
    """One seeded set of `instances` per level, plus the mixed set when there is more than one level."""
    if int(instances) < 1:
        raise LevelError(f"instances must be >= 1, got {instances}.")
    n = int(instances)
    sets = []
    for level in levels:
        name = level_name(level)
        per = torch.full((n,), float(level), dtype=torch.float64)  # float64: a level reads back as given
        problem = _generate(task, n, per, set_generator(seed, name), name)
        sets.append(LevelSet(name, float(level), problem, per, _difficulty(problem, per)))
    if mixed and len(levels) > 1:
        pick = torch.randint(len(levels), (n,), generator=set_generator(seed, "mixed/levels"))
        per = torch.tensor([float(v) for v in levels], dtype=torch.float64)[pick]
        problem = _generate(task, n, per, set_generator(seed, "mixed"), "mixed")
        sets.append(LevelSet("mixed", None, problem, per, _difficulty(problem, per)))
    return sets


def file_set(task: Task, name: str) -> LevelSet:
    """A split the task reads from a data file (irem-study's `files`) as a set of the study: no level
    of the sweep (NaN per instance), the difficulty its instances record."""
    problem = task.split(name)
    nan = torch.full((problem.num_instances,), float("nan"), dtype=torch.float64)
    return LevelSet(name, None, problem, nan, _difficulty(problem, nan))
