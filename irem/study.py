"""The compute-vs-difficulty measurement behind `irem-study`: difficulty levels x step budgets x solvers.

One trained model answers fresh, seeded problem sets (irem/problem_sets.py): one per difficulty
level and a "mixed" set whose instances draw their level from the list. An energy model is
descended by each solver of the study. A solver with halting rules (solvers/adaptive.py) runs once
at its own max_steps and the steps every instance used are recorded. Any other solver runs once at
the largest budget with a snapshot at every budget (the errors, as irem-eval computes them) and
once more per budget, timed, so error against wall-clock is measured rather than extrapolated from
the step count. A model that is not descended (a baseline) answers through its own
`Predictor.predict`: one cell per budget at which its answer can change (a recurrent network's
iterations), a single one where none does (a feed-forward network).

The headline metric is the task's `error_metric`, whatever its direction (`higher_is_better`).
What is measured is held in a `Study`; irem/records.py writes it, irem/tables.py prints it,
irem/plots.py draws it and irem/study_command.py runs the command.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from irem.energy_model import solve_problem
from irem.errors import SettingError
from irem.evaluation import eval_batches
from irem.predictor import Predictor, check_budgets, predict_constrained
from irem.problem import Problem, SolveResult, Status
from irem.problem_sets import LevelSet, make_sets
from irem.seeds import set_generator
from irem.solver import Solver
from irem.solver_settings import solver_settings
from irem.task import Task


class StudyError(SettingError):
    """A study setting the command cannot use (an unknown solver, no budgets); the message names
    the valid choices, and irem-study prints it without a traceback."""


@dataclass
class Study:
    """Everything a study measured, in the rows it writes."""

    title: str
    task: str
    metric: str
    level_label: str
    difficulty_label: str
    solvers: dict[str, dict[str, Any]]
    higher_is_better: list[str] = field(default_factory=list)  # of the metrics in the cells
    level_values: list[float] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    levels: list[dict[str, Any]] = field(default_factory=list)
    correlations: dict[str, dict[str, float | None]] = field(default_factory=dict)


def study_budgets(budgets: Sequence[int]) -> list[int]:
    """The fixed solvers' budgets, sorted; a study needs at least one step (budget 0 is the start)."""
    try:
        return check_budgets(budgets, minimum=1)
    except ValueError as err:
        raise StudyError(str(err)) from err


def is_adaptive(solver: Solver | Predictor) -> bool:
    """A solver with halting rules decides per instance how many steps to take, so it runs once
    at its own max_steps; every other solver is run at each budget of the study."""
    return bool(getattr(solver, "adaptive", False))


def is_energy_model(model: Predictor) -> bool:
    """Whether the study can descend the model's energy with solvers of its own choosing."""
    return isinstance(getattr(model, "solver", None), Solver) and hasattr(model, "energy")


def headline(task: Task, metrics: dict[str, Tensor]) -> str:
    """The task's `error_metric`, checked against the metrics it computes."""
    if task.error_metric not in metrics:
        raise ValueError(
            f"Task '{task.name}' declares error_metric '{task.error_metric}', which its metrics do not "
            f"compute; valid: {', '.join(metrics)}."
        )
    return task.error_metric


# -- the sweep ----------------------------------------------------------------------------------


@dataclass
class _Part:
    """A batch of a set, on the device, with the start every solver descends from."""

    problem: Problem
    y0: Tensor


def _parts(task: Task, s: LevelSet, batch_size: int, seed: int, device: torch.device) -> list[_Part]:
    """The set cut as evaluation cuts it (the task's own units: whole text windows), each part with the
    start every solver descends from."""
    g = set_generator(seed, f"{s.name}/start")
    parts = [s.problem] if batch_size >= s.problem.num_instances else eval_batches(task, s.problem, batch_size)
    return [_Part(part.to(device), task.init_answer(part, g).to(device)) for part in parts]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _solve(
    task: Task,
    model: Predictor,
    solver: Solver,
    parts: list[_Part],
    budget: int,
    snapshots: Sequence[int],
    seed: int,
    name: str,
) -> tuple[list[SolveResult], float]:
    """Solve every part from its start; the wall-clock seconds of the solves alone. Fresh starts a
    solver asks for (best-of-N) come from the task's own start, as in evaluation."""
    results, seconds = [], 0.0
    for i, p in enumerate(parts):
        g = set_generator(seed, f"{name}/noise/{i}")  # the same noise for every budget of a solver
        _sync(p.y0.device)
        start = time.perf_counter()
        r = solve_problem(task, model.energy, solver, p.problem, p.y0, budget, snapshots, g)
        _sync(p.y0.device)
        seconds += time.perf_counter() - start
        results.append(r.detach())
    return results, seconds


def _predict(
    task: Task, model: Predictor, parts: list[_Part], budgets: Sequence[int], seed: int, name: str
) -> tuple[list[dict[str, Tensor]], dict[str, float], float]:
    """A predictor's own answers for every part at `budgets`: per part the answers by label, the
    mean steps per label over the whole set (`info["steps_mean"]`, else the budget itself), and the
    wall-clock seconds of the predictions alone."""
    answers, steps, seconds = [], {str(b): 0.0 for b in budgets}, 0.0
    n = sum(p.problem.num_instances for p in parts)
    for i, p in enumerate(parts):
        g = set_generator(seed, f"{name}/predict/{i}")  # the same draws for every budget
        _sync(p.y0.device)
        start = time.perf_counter()
        preds = predict_constrained(model, task, p.problem, budgets, g)
        _sync(p.y0.device)
        seconds += time.perf_counter() - start
        answers.append(preds.answers)
        mean = preds.info.get("steps_mean", {})
        for label in steps:
            steps[label] += float(mean.get(label, label)) * p.problem.num_instances / n
    return answers, steps, seconds


def _metrics(task: Task, parts: list[_Part], answers: list[Tensor]) -> dict[str, Tensor]:
    """Per-instance metrics of the whole set, in the task's order."""
    per = [task.metrics(p.problem, y.detach()) for p, y in zip(parts, answers, strict=True)]
    return {k: torch.cat([m[k].detach().double().cpu() for m in per]) for k in per[0]}


def _cell(
    task: Task,
    name: str,
    adaptive: bool,
    s: LevelSet,
    budget: int,
    metrics: dict[str, Tensor],
    timed: Tensor,
    steps: Tensor,
    seconds: float,
) -> dict[str, Any]:
    """One (solver, set, budget): the headline metric's mean and median as `error`, whatever its
    direction, the other metrics' means under their own names."""
    metric = headline(task, metrics)
    values = metrics[metric]
    steps = steps.double()
    cell = {
        "solver": name,
        "adaptive": adaptive,
        "set": s.name,
        "level": s.level,
        "budget": int(budget),
        "metric": metric,
        "error": float(values.mean()),
        "error_median": float(values.median()),
        "timed_error": float(timed.mean()),
        "steps_mean": float(steps.mean()),
        "steps_median": float(steps.median()),
        "seconds": seconds,
        "n": int(values.numel()),
    }
    cell.update({k: float(v.mean()) for k, v in metrics.items() if k != metric})
    return cell


Cells = list[dict[str, Any]]


def _adaptive_cells(
    task: Task, model: Predictor, name: str, solver: Solver, s: LevelSet, ps: list[_Part], seed: int
) -> tuple[Cells, Cells]:
    results, seconds = _solve(task, model, solver, ps, solver.max_steps, (), seed, f"{s.name}/{name}")
    metrics = _metrics(task, ps, [r.y for r in results])
    steps = torch.cat([r.steps.cpu() for r in results])
    error = metrics[headline(task, metrics)]
    cell = _cell(task, name, True, s, solver.max_steps, metrics, error, steps, seconds)
    return [cell], _instance_rows(name, s, results, error)


def _fixed_cells(
    task: Task, model: Predictor, name: str, solver: Solver, s: LevelSet, ps: list[_Part], budgets: list[int], seed: int
) -> Cells:
    snap, _ = _solve(task, model, solver, ps, budgets[-1], budgets, seed, f"{s.name}/{name}")
    cells = []
    for b in budgets:
        metrics = _metrics(task, ps, [r.snapshots[b] for r in snap])
        timed, seconds = _solve(task, model, solver, ps, b, (), seed, f"{s.name}/{name}")
        timed_metrics = _metrics(task, ps, [r.y for r in timed])
        steps = torch.cat([r.steps.cpu() for r in timed])
        cells.append(
            _cell(task, name, False, s, b, metrics, timed_metrics[headline(task, timed_metrics)], steps, seconds)
        )
    return cells


def predictor_budgets(steps: dict[str, float], budgets: Sequence[int]) -> list[int]:
    """The budgets at which a predictor's answer can change: where it used more steps than at the
    budget before. A feed-forward network (one pass at every budget) keeps only the first."""
    kept: list[int] = []
    for b in budgets:
        if not kept or steps[str(b)] != steps[str(kept[-1])]:
            kept.append(b)
    return kept


def _predictor_cells(
    task: Task, model: Predictor, name: str, s: LevelSet, ps: list[_Part], budgets: list[int], seed: int
) -> Cells:
    key = f"{s.name}/{name}"
    answers, steps, _ = _predict(task, model, ps, budgets, seed, key)
    cells = []
    for b in predictor_budgets(steps, budgets):
        metrics = _metrics(task, ps, [a[str(b)] for a in answers])
        timed, _, seconds = _predict(task, model, ps, [b], seed, key)  # timed alone, as a fixed solver's budget
        timed_metrics = _metrics(task, ps, [a[str(b)] for a in timed])
        cell = _cell(
            task, name, False, s, b, metrics, timed_metrics[headline(task, timed_metrics)], torch.zeros(1), seconds
        )
        cell["steps_mean"], cell["steps_median"] = steps[str(b)], float("nan")  # no per-instance steps
        cells.append(cell)
    return cells


def run_sweep(
    task: Task,
    model: Predictor,
    solvers: dict[str, Solver | Predictor],
    sets: list[LevelSet],
    budgets: Sequence[int],
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cells, instance rows): every solver on every set at every budget (adaptive: its own). An
    entry that is the model itself (a Predictor, not a Solver) answers through its own predict."""
    budgets = study_budgets(budgets)
    device = torch.device(device)
    parts = {s.name: _parts(task, s, int(batch_size), seed, device) for s in sets}
    total = sum(len(sets) * (1 if is_adaptive(sv) else len(budgets)) for sv in solvers.values())
    cells: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    model.eval()
    bar = tqdm(total=total, desc="study", disable=not progress, mininterval=1.0)
    try:
        for name, solver in solvers.items():
            solver.to(device).eval()
            for s in sets:
                ps = parts[s.name]
                if isinstance(solver, Predictor):
                    cells += _predictor_cells(task, solver, name, s, ps, budgets, seed)
                    bar.update(len(budgets))
                elif is_adaptive(solver):
                    new, instance_rows = _adaptive_cells(task, model, name, solver, s, ps, seed)
                    cells += new
                    rows += instance_rows
                    bar.update(1)
                else:
                    cells += _fixed_cells(task, model, name, solver, s, ps, budgets, seed)
                    bar.update(len(budgets))
    finally:
        bar.close()
        model.train()
    return cells, rows


def _instance_rows(name: str, s: LevelSet, results: list[SolveResult], error: Tensor) -> list[dict[str, Any]]:
    steps = torch.cat([r.steps.cpu() for r in results]).tolist()
    status = torch.cat([r.status.cpu() for r in results]).tolist()
    rules = results[0].rules
    stopped = (
        torch.cat([r.stopped_by.cpu() for r in results]).tolist()
        if results[0].stopped_by is not None
        else [-1] * len(steps)
    )
    error = error.tolist()
    n = len(steps)
    # per-instance numbers the task records beside its difficulty (a Sudoku's solver effort), as columns
    extra = {
        f"info_{k}": v.detach().double().cpu().tolist()
        for k, v in s.problem.info.items()
        if isinstance(v, Tensor) and v.shape == (n,) and not v.is_complex()
    }
    return [
        {
            "solver": name,
            "set": s.name,
            "instance": i,
            "level": float(s.levels[i]),
            "difficulty": float(s.difficulty[i]),
            "steps": int(steps[i]),
            "status": Status(status[i]).name.lower(),
            "stopped_by": rules[stopped[i]] if stopped[i] >= 0 else "",
            "error": float(error[i]),
            **{k: v[i] for k, v in extra.items()},
        }
        for i in range(n)
    ]


# -- aggregates -----------------------------------------------------------------------------------


def level_summary(sets: list[LevelSet], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per set and level (the mixed set split by each instance's level): the spread of the task's
    difficulty and, per adaptive solver, the steps it spent and the error it reached."""
    out = []
    adaptive = list(dict.fromkeys(r["solver"] for r in rows))
    order = [s.level for s in sets if s.level is not None]
    for s in sets:
        present = set(s.levels.tolist())
        if s.level is not None:
            levels = [s.level]
        elif bool(s.levels.isnan().all()):  # a set read from a file (file_set): one entry, no level
            levels = [math.nan]
        else:  # the mixed set, by each instance's level
            levels = [v for v in order if v in present]
        for level in levels:
            mask = torch.ones_like(s.levels, dtype=torch.bool) if math.isnan(level) else s.levels == level
            d = s.difficulty[mask]
            entry: dict[str, Any] = {
                "set": s.name,
                "level": float(level),
                "n": int(mask.sum()),
                "difficulty_min": float(d.min()),
                "difficulty_median": float(d.median()),
                "difficulty_max": float(d.max()),
            }
            for name in adaptive:
                mine = [
                    r
                    for r in rows
                    if r["solver"] == name and r["set"] == s.name and (math.isnan(level) or r["level"] == level)
                ]
                steps = [r["steps"] for r in mine]
                entry[f"{name}_steps_mean"] = statistics.fmean(steps)
                entry[f"{name}_steps_median"] = float(statistics.median(steps))
                entry[f"{name}_error"] = statistics.fmean(r["error"] for r in mine)
            out.append(entry)
    return out


def correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Spearman rank correlation of steps used with the task's difficulty, per adaptive solver:
    over every instance, and within the mixed set (one batch of mixed difficulty); and over every
    instance with each per-instance number the task records in `info` (`info_<name>`)."""

    def rho(sub: list[dict[str, Any]], key: str = "difficulty") -> float | None:
        if len(sub) < 3:
            return None
        steps, diff = [r["steps"] for r in sub], [r[key] for r in sub]
        if len(set(steps)) < 2 or len(set(diff)) < 2:
            return None  # constant: no rank correlation exists
        from scipy.stats import spearmanr  # scipy.stats takes a second to import: only when a study runs

        return float(spearmanr(diff, steps).statistic)

    out = {}
    for name in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == name]
        out[name] = {"all": rho(mine), "mixed": rho([r for r in mine if r["set"] == "mixed"])}
        for key in [k for k in mine[0] if k.startswith("info_")] if mine else []:
            if all(key in r for r in mine):
                out[name][key] = rho(mine, key)
    return out


def _solver_record(solver: Solver | Predictor, budgets: list[int], config: Any) -> dict[str, Any]:
    if isinstance(solver, Predictor):  # the model itself: its own predict, no solver settings
        return {"adaptive": False, "max_steps": budgets[-1], "config": config, "predictor": type(solver).__name__}
    record = {"adaptive": is_adaptive(solver), "max_steps": int(solver.max_steps), "config": config}
    if getattr(solver, "descent", None) is not None:
        record["descent"] = solver_settings(solver.descent)
    return record


def measure(
    task: Task,
    model: Predictor,
    solvers: dict[str, Solver | Predictor],
    levels: Sequence[float],
    budgets: Sequence[int],
    *,
    instances: int = 200,
    mixed: bool = True,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    progress: bool = True,
    title: str = "study",
    configs: dict[str, Any] | None = None,
    extra_sets: Sequence[LevelSet] = (),
) -> Study:
    """The whole study of `model` in memory: sets, sweep, per-level aggregates, correlations.
    Levels and the per-instance difficulty are labelled as the task names them. `extra_sets` are
    studied after the levels' (a split read from a file: problem_sets.file_set)."""
    if not solvers:
        raise StudyError("the study has nothing to measure: give at least one solver.")
    budgets = study_budgets(budgets)
    sets = make_sets(task, levels, instances, seed, mixed) + list(extra_sets)
    cells, rows = run_sweep(task, model, solvers, sets, budgets, seed, batch_size, device, progress)
    computed = {cells[0]["metric"], *cells[0]}  # the headline, and the other metrics by name
    return Study(
        title=title,
        task=task.name,
        metric=cells[0]["metric"],
        level_label=str(task.level_label),
        difficulty_label=task.difficulty_label,
        solvers={name: _solver_record(sv, budgets, (configs or {}).get(name)) for name, sv in solvers.items()},
        higher_is_better=sorted(computed & task.higher_is_better),
        level_values=[float(v) for v in levels],
        budgets=budgets,
        cells=cells,
        instances=rows,
        levels=level_summary(sets, rows),
        correlations=correlations(rows),
    )
