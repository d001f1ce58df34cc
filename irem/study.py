"""The compute-vs-difficulty study behind `irem-study`: difficulty levels x step budgets x solvers.

One trained energy model is descended on fresh, seeded problem sets: one per difficulty level
(the value `task.generate` takes: the inverse task's diagonal shift c, a graph's node count) and
a "mixed" set whose instances draw their level from the list, as a real workload would. A solver
with halting rules (solvers/adaptive.py) runs once at its own max_steps and the steps every
instance used are recorded. Any other solver runs once at the largest budget with a snapshot at
every budget (the errors, as irem-eval computes them) and once more per budget, timed, so error
against wall-clock is measured rather than extrapolated from the step count.

Records: one cell per (solver, set, budget) in study.json / study.csv; one row per instance of
every adaptive solve in instances.csv; per-level aggregates and the rank correlation of steps
with difficulty in study.json; scalars and histograms under `study/` in TensorBoard. The figures
are drawn by irem/plots.py.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from scipy.stats import spearmanr
from torch import Tensor
from tqdm.auto import tqdm

from irem.build import build_solver
from irem.evaluation import format_table
from irem.predictor import Predictor, check_budgets
from irem.problem import Problem, SolveResult, Status
from irem.solver import Solver
from irem.task import Task

INSTANCE_FIELDS = ("solver", "set", "instance", "level", "difficulty", "steps", "status", "stopped_by", "error")
# Overrides that only shape the study's own short training: with run_dir set they would be ignored.
TRAINING_KEYS = ("task", "energy", "train_solver", "solver@train_solver", "model", "trainer", "resume")


class StudyError(ValueError):
    """A study setting the command cannot use (an unknown solver, a level the task rejects); the
    message names the valid choices, and irem-study prints it without a traceback."""


@dataclass
class StudySet:
    """The instances of one difficulty level (or of the mixed set: each its own drawn level)."""

    name: str
    level: float | None  # None for the mixed set
    problem: Problem
    levels: Tensor  # the level of each instance
    difficulty: Tensor  # what the task records per instance (condition number, node count), else the level


@dataclass
class Study:
    """Everything a study measured, in the rows it writes."""

    title: str
    task: str
    metric: str
    level_label: str
    difficulty_label: str
    solvers: dict[str, dict[str, Any]]
    level_values: list[float] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    levels: list[dict[str, Any]] = field(default_factory=list)
    correlations: dict[str, dict[str, float | None]] = field(default_factory=dict)


# -- configuration ------------------------------------------------------------------------------


def training_config(cfg: DictConfig) -> DictConfig:
    """The irem-train config of the study's own short training, so its checkpoint is an ordinary
    run that irem-eval and `irem-study run_dir=...` can load."""
    keep = ("task", "energy", "model", "trainer", "seed", "device", "threads", "resume", "name")
    out = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k] for k in keep}
    out["solver"] = OmegaConf.to_container(cfg.train_solver, resolve=True)
    out["baseline"] = None
    return OmegaConf.create(out)


def ignored_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides that configure the short training, which a study of a run skips."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] in TRAINING_KEYS]


def solver_choices(config_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir) / "solver").glob("*.yaml"))


def solver_configs(names: Sequence[str], config_dir: str | Path) -> dict[str, DictConfig]:
    """Compose configs/solver/<name>.yaml for every name (with its defaults list, as Hydra does)."""
    valid = solver_choices(config_dir)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise StudyError(
            f"Unknown solver {', '.join(map(repr, unknown))} in solvers. Valid choices: {', '.join(valid)}."
        )
    if not names:
        raise StudyError(f"solvers is empty; give at least one of: {', '.join(valid)}.")
    overrides = [[f"+solver={n}"] for n in names]
    if GlobalHydra.instance().is_initialized():  # inside irem-study: Hydra's search path is configs/
        nodes = [compose(overrides=o).solver for o in overrides]
    else:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            nodes = [compose(overrides=o).solver for o in overrides]
    return dict(zip(names, nodes, strict=True))


def build_solvers(model: Predictor, configs: dict[str, DictConfig]) -> dict[str, Solver]:
    """Each solver for this model; a wrapper configured without a base (adaptive) wraps the
    model's own trained solver, as `irem-eval solver=...` does."""
    base = getattr(model, "solver", None)
    if base is None or not hasattr(model, "energy"):
        raise StudyError(f"A study descends an energy; the run holds a {type(model).__name__}, which has no solver.")
    return {name: build_solver(node).with_base(base) for name, node in configs.items()}


def descent_settings(descent: Solver) -> dict[str, Any]:
    """The plain settings of the descent a wrapper runs (the trained one, with any solver_settings),
    which its own config (descent: null) does not show."""
    out = {k: v for k, v in vars(descent).items() if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
    step = getattr(descent, "step_size", None)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        out["step_size"] = float(step)
    return {"type": type(descent).__name__, **out}


def is_adaptive(solver: Solver) -> bool:
    """A solver with halting rules decides per instance how many steps to take, so it runs once
    at its own max_steps; every other solver is run at each budget of the study."""
    return bool(getattr(solver, "adaptive", False))


def study_levels(task: Task, levels: Sequence[float] | None, defaults: Sequence[float] | None = None) -> list[float]:
    """The levels given, else the task's defaults from study.yaml, else its own split levels."""
    if levels is None:
        levels = defaults
    if levels is None:
        levels = [v for v in dict.fromkeys(task.split_levels().values()) if v is not None]
    levels = [float(v) for v in levels]
    if not levels:
        raise StudyError("levels is empty; give at least one difficulty level, e.g. levels=[0.5,0.1].")
    names = [f"{v:g}" for v in levels]
    if len(set(names)) != len(names):
        raise StudyError(f"levels has repeated values: {levels}.")
    return levels


def study_budgets(budgets: Sequence[int]) -> list[int]:
    """The fixed solvers' budgets, sorted; a study needs at least one step (budget 0 is the start)."""
    try:
        return check_budgets(budgets, minimum=1)
    except ValueError as err:
        raise StudyError(str(err)) from err


# -- problem sets -------------------------------------------------------------------------------


def _generator(seed: int, name: str) -> torch.Generator:
    """A generator per set and purpose, so a level's instances do not depend on the other levels
    (crc32, not hash(): the same in every process)."""
    return torch.Generator().manual_seed(10_000 * (int(seed) + 1) + zlib.crc32(name.encode()) % 10_000)


def _generate(task: Task, n: int, level: Tensor, generator: torch.Generator, shown: str) -> Problem:
    try:
        return task.generate(n, level, generator)
    except (ValueError, RuntimeError) as err:
        splits = ", ".join(f"{k}={v:g}" for k, v in task.split_levels().items() if v is not None)
        raise StudyError(
            f"Difficulty level {shown} is rejected by task '{task.name}': {err} "
            f"Valid levels are values task.generate accepts; the task's own splits use {splits}."
        ) from err


def make_sets(task: Task, levels: Sequence[float], instances: int, seed: int, mixed: bool = True) -> list[StudySet]:
    """One seeded set per level, plus the mixed set when there is more than one level."""
    if int(instances) < 1:
        raise StudyError(f"instances must be >= 1, got {instances}.")
    n = int(instances)
    sets = []
    for level in levels:
        name = f"{level:g}"
        per = torch.full((n,), float(level), dtype=torch.float64)  # float64: a level reads back as given
        problem = _generate(task, n, per, _generator(seed, name), name)
        sets.append(StudySet(name, float(level), problem, per, _difficulty(problem, per)))
    if mixed and len(levels) > 1:
        pick = torch.randint(len(levels), (n,), generator=_generator(seed, "mixed/levels"))
        per = torch.tensor([float(v) for v in levels], dtype=torch.float64)[pick]
        problem = _generate(task, n, per, _generator(seed, "mixed"), "mixed")
        sets.append(StudySet("mixed", None, problem, per, _difficulty(problem, per)))
    return sets


def _difficulty(problem: Problem, levels: Tensor) -> Tensor:
    d = problem.difficulty
    return levels.clone() if d is None else d.detach().float().cpu().reshape(-1)


# -- the sweep ----------------------------------------------------------------------------------


@dataclass
class _Part:
    """A batch of a set, on the device, with the start every solver descends from."""

    problem: Problem
    y0: Tensor


def _parts(task: Task, s: StudySet, batch_size: int, seed: int, device: torch.device) -> list[_Part]:
    g = _generator(seed, f"{s.name}/start")
    n = s.problem.num_instances
    out = []
    for lo in range(0, n, batch_size):
        part = s.problem if batch_size >= n else s.problem.select(torch.arange(lo, min(lo + batch_size, n)))
        out.append(_Part(part.to(device), task.init_answer(part, g).to(device)))
    return out


def _solve(
    model: Predictor, solver: Solver, parts: list[_Part], budget: int, snapshots: Sequence[int], seed: int, name: str
) -> tuple[list[SolveResult], float]:
    """Solve every part from its start; the wall-clock seconds of the solves alone."""
    results, seconds = [], 0.0
    for i, p in enumerate(parts):
        g = _generator(seed, f"{name}/noise/{i}")  # the same noise for every budget of a solver
        _sync(p.y0.device)
        start = time.perf_counter()
        r = solver.solve(
            model.energy,
            p.problem.x,
            p.y0,
            budget=budget,
            segment=p.problem.segment,
            snapshots=snapshots,
            generator=g,
        )
        _sync(p.y0.device)
        seconds += time.perf_counter() - start
        results.append(r.detach())
    return results, seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _metrics(task: Task, parts: list[_Part], answers: list[Tensor]) -> dict[str, Tensor]:
    """Per-instance metrics of the whole set, in the task's order (the first is the error)."""
    per = [task.metrics(p.problem, y.detach()) for p, y in zip(parts, answers, strict=True)]
    return {k: torch.cat([m[k].detach().double().cpu() for m in per]) for k in per[0]}


def _cell(
    name: str,
    adaptive: bool,
    s: StudySet,
    budget: int,
    metrics: dict[str, Tensor],
    timed: Tensor,
    steps: Tensor,
    seconds: float,
) -> dict[str, Any]:
    metric, *others = metrics
    values = metrics[metric]
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
        "steps_mean": float(steps.double().mean()),
        "steps_median": float(steps.double().median()),
        "seconds": seconds,
        "n": int(values.numel()),
    }
    cell.update({k: float(metrics[k].mean()) for k in others})
    return cell


def run_sweep(
    task: Task,
    model: Predictor,
    solvers: dict[str, Solver],
    sets: list[StudySet],
    budgets: Sequence[int],
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cells, instance rows): every solver on every set at every budget (adaptive: its own)."""
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
            adaptive = is_adaptive(solver)
            for s in sets:
                ps = parts[s.name]
                if adaptive:
                    results, seconds = _solve(model, solver, ps, solver.max_steps, (), seed, f"{s.name}/{name}")
                    metrics = _metrics(task, ps, [r.y for r in results])
                    steps = torch.cat([r.steps.cpu() for r in results])
                    cells.append(
                        _cell(name, True, s, solver.max_steps, metrics, next(iter(metrics.values())), steps, seconds)
                    )
                    rows += _instance_rows(name, s, results, metrics)
                    bar.update(1)
                    continue
                snap, _ = _solve(model, solver, ps, budgets[-1], budgets, seed, f"{s.name}/{name}")
                for b in budgets:
                    metrics = _metrics(task, ps, [r.snapshots[b] for r in snap])
                    timed, seconds = _solve(model, solver, ps, b, (), seed, f"{s.name}/{name}")
                    timed_error = next(iter(_metrics(task, ps, [r.y for r in timed]).values()))
                    steps = torch.cat([r.steps.cpu() for r in timed])
                    cells.append(_cell(name, False, s, b, metrics, timed_error, steps, seconds))
                    bar.update(1)
    finally:
        bar.close()
        model.train()
    return cells, rows


def _instance_rows(
    name: str, s: StudySet, results: list[SolveResult], metrics: dict[str, Tensor]
) -> list[dict[str, Any]]:
    steps = torch.cat([r.steps.cpu() for r in results]).tolist()
    status = torch.cat([r.status.cpu() for r in results]).tolist()
    rules = results[0].rules
    stopped = (
        torch.cat([r.stopped_by.cpu() for r in results]).tolist()
        if results[0].stopped_by is not None
        else [-1] * len(steps)
    )
    error = next(iter(metrics.values())).tolist()
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
        }
        for i in range(len(steps))
    ]


# -- aggregates -----------------------------------------------------------------------------------


def level_summary(sets: list[StudySet], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per set and level (the mixed set split by each instance's level): the spread of the task's
    difficulty and, per adaptive solver, the steps it spent and the error it reached."""
    out = []
    adaptive = list(dict.fromkeys(r["solver"] for r in rows))
    order = [s.level for s in sets if s.level is not None]
    for s in sets:
        present = set(s.levels.tolist())
        for level in [v for v in order if v in present] if s.level is None else [s.level]:
            mask = s.levels == level
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
                mine = [r for r in rows if r["solver"] == name and r["set"] == s.name and r["level"] == level]
                steps = [r["steps"] for r in mine]
                entry[f"{name}_steps_mean"] = statistics.fmean(steps)
                entry[f"{name}_steps_median"] = float(statistics.median(steps))
                entry[f"{name}_error"] = statistics.fmean(r["error"] for r in mine)
            out.append(entry)
    return out


def correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Spearman rank correlation of steps used with the task's difficulty, per adaptive solver:
    over every instance, and within the mixed set (one batch of mixed difficulty)."""

    def rho(sub: list[dict[str, Any]]) -> float | None:
        if len(sub) < 3:
            return None
        steps, diff = [r["steps"] for r in sub], [r["difficulty"] for r in sub]
        if len(set(steps)) < 2 or len(set(diff)) < 2:
            return None  # constant: no rank correlation exists
        return float(spearmanr(diff, steps).statistic)

    out = {}
    for name in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == name]
        out[name] = {"all": rho(mine), "mixed": rho([r for r in mine if r["set"] == "mixed"])}
    return out


# -- records ---------------------------------------------------------------------------------------


def _csv(rows: list[dict[str, Any]], path: Path, fields: Sequence[str] | None = None) -> None:
    names = list(fields or (rows[0] if rows else ()))
    for r in rows:
        names += [k for k in r if k not in names]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def _finite(value: Any) -> Any:
    """NaN and infinity as null: strict JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_records(study: Study, out_dir: str | Path) -> list[Path]:
    """study.json (everything), study.csv (every cell), instances.csv (every adaptive instance)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "study.json", out_dir / "study.csv", out_dir / "instances.csv"]
    record = {
        "title": study.title,
        "task": study.task,
        "metric": study.metric,
        "level_label": study.level_label,
        "difficulty_label": study.difficulty_label,
        "solvers": study.solvers,
        "level_values": study.level_values,
        "budgets": study.budgets,
        "correlations": study.correlations,
        "levels": study.levels,
        "cells": study.cells,
    }
    paths[0].write_text(json.dumps(_finite(record), indent=2))
    _csv(study.cells, paths[1])
    _csv(study.instances, paths[2], INSTANCE_FIELDS)
    return paths


def log_tensorboard(study: Study, out_dir: str | Path) -> Path:
    """study/<solver>/<metric>/<set> against the step budget as x-axis (an adaptive solver: at its
    mean steps), study/<solver>/seconds/<set>, and study/<solver>/steps/<set> histograms."""
    from torch.utils.tensorboard import SummaryWriter

    path = Path(out_dir) / "tb"
    writer = SummaryWriter(str(path))
    try:
        for c in study.cells:
            step = round(c["steps_mean"]) if c["adaptive"] else c["budget"]
            writer.add_scalar(f"study/{c['solver']}/{c['metric']}/{c['set']}", c["error"], global_step=step)
            writer.add_scalar(f"study/{c['solver']}/seconds/{c['set']}", c["seconds"], global_step=step)
        groups: dict[tuple[str, str], list[int]] = {}
        for r in study.instances:
            groups.setdefault((r["solver"], r["set"]), []).append(r["steps"])
        for (solver, name), steps in groups.items():
            writer.add_histogram(f"study/{solver}/steps/{name}", torch.tensor(steps), global_step=0)
    finally:
        writer.close()
    return path


def _number(value: float) -> str:
    """A table entry: 4 significant digits, or a dash where the row has no such number."""
    return f"{value:>12.4g}" if math.isfinite(value) else f"{'-':>12}"


def format_study(study: Study) -> str:
    """irem-eval's table for each fixed solver (sets down, budgets across: error, then seconds),
    then one line per set and level for each adaptive solver."""
    fixed = [c for c in study.cells if not c["adaptive"]]
    rows = [
        {"split": c["set"], "budget": str(c["budget"]), "metric": f"{c['solver']} {c['metric']}", "value": c["error"]}
        for c in fixed
    ]
    rows += [
        {"split": c["set"], "budget": str(c["budget"]), "metric": f"{c['solver']} seconds", "value": c["seconds"]}
        for c in fixed
    ]
    blocks = [format_table(rows, study.title)] if rows else []
    pad = " " * (len(study.title) + 2)
    for name in dict.fromkeys(c["solver"] for c in study.cells if c["adaptive"]):
        cell = {c["set"]: c for c in study.cells if c["solver"] == name}
        budget = next(iter(cell.values()))["budget"]
        head = f"{name} (max {budget} steps)"
        cols = ("level", "difficulty", "steps mean", "steps med", study.metric, "seconds")
        lines = [f"{study.title}  {head:<24}" + "".join(f"{c:>12}" for c in cols)]
        for lv in study.levels:
            if f"{name}_steps_mean" not in lv:
                continue
            seconds = cell[lv["set"]]["seconds"] if lv["set"] != "mixed" else math.nan
            values = (
                lv["level"],
                lv["difficulty_median"],
                lv[f"{name}_steps_mean"],
                lv[f"{name}_steps_median"],
                lv[f"{name}_error"],
                seconds,
            )
            lines.append(f"{pad}{lv['set']:<24}" + "".join(map(_number, values)))
        if "mixed" in cell:
            c = cell["mixed"]
            values = (math.nan, math.nan, c["steps_mean"], c["steps_median"], c["error"], c["seconds"])
            lines.append(f"{pad}{'mixed (all)':<24}" + "".join(map(_number, values)))
        rho = study.correlations.get(name, {})
        lines.append(
            f"{pad}Spearman(steps, {study.difficulty_label}): "
            + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in rho.items())
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# -- the command -----------------------------------------------------------------------------------


def measure(
    task: Task,
    model: Predictor,
    solvers: dict[str, Solver],
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
    level_label: str = "level",
    difficulty_label: str = "difficulty",
    configs: dict[str, Any] | None = None,
) -> Study:
    """The whole study of `model` in memory: sets, sweep, per-level aggregates, correlations."""
    budgets = study_budgets(budgets)
    sets = make_sets(task, levels, instances, seed, mixed)
    cells, rows = run_sweep(task, model, solvers, sets, budgets, seed, batch_size, device, progress)
    return Study(
        title=title,
        task=task.name,
        metric=cells[0]["metric"],
        level_label=level_label,
        difficulty_label=difficulty_label,
        solvers={
            name: {
                "adaptive": is_adaptive(sv),
                "max_steps": int(sv.max_steps),
                "config": (configs or {}).get(name),
                **({"descent": descent_settings(sv.descent)} if getattr(sv, "descent", None) is not None else {}),
            }
            for name, sv in solvers.items()
        },
        level_values=[float(v) for v in levels],
        budgets=budgets,
        cells=cells,
        instances=rows,
        levels=level_summary(sets, rows),
        correlations=correlations(rows),
    )


def preflight(cfg: DictConfig, task: Task, config_dir: str | Path) -> None:
    """Check solver names, budgets and levels before a model is trained for minutes, so a typo
    fails at once (one instance per level is generated: the task itself judges its levels)."""
    if cfg.get("solver") is None:
        solver_configs(list(cfg.solvers), config_dir)
    study_budgets(cfg.budgets)
    knob = (cfg.get("knobs") or {}).get(task.name) or {}
    make_sets(task, study_levels(task, cfg.levels, knob.get("levels")), 1, cfg.seed, mixed=False)


def run(
    cfg: DictConfig, task: Task, model: Predictor, out_dir: str | Path, config_dir: str | Path, device: torch.device
) -> Study:
    """irem-study after the model is trained or loaded: sweep, records, TensorBoard, plots, table."""
    from irem.plots import study_plots  # matplotlib loads only when a study runs

    chosen = cfg.get("solver")
    if chosen is not None:  # one solver, as a multirun job gets it: solver=adaptive
        label = HydraConfig.get().runtime.choices.get("solver") if HydraConfig.initialized() else None
        configs = {str(label or "solver"): chosen}
    else:
        configs = solver_configs(list(cfg.solvers), config_dir)
    solvers = build_solvers(model, configs)
    knob = (cfg.get("knobs") or {}).get(task.name) or {}
    study = measure(
        task,
        model,
        solvers,
        study_levels(task, cfg.levels, knob.get("levels")),
        cfg.budgets,
        instances=cfg.instances,
        mixed=cfg.mixed,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        device=device,
        progress=cfg.progress,
        title=str(cfg.name),
        level_label=str(knob.get("level") or "level"),
        difficulty_label=str(knob.get("difficulty") or "difficulty"),
        configs={k: OmegaConf.to_container(v, resolve=True) for k, v in configs.items()},
    )
    paths = write_records(study, out_dir)
    log_tensorboard(study, out_dir)
    if cfg.plots:
        paths += study_plots(study, out_dir)
    print(format_study(study))
    print("results: " + " ".join(str(p) for p in paths))
    return study
