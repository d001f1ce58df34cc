"""`irem-study` as a command: from its config (configs/study.yaml) to a measured, written study.

The command trains a short model first when `run_dir` is null (an ordinary irem-train run in the
study's output dir) or loads the run it names; this module holds what lies around the measurement
(irem/study.py): the config of that short training, the overrides a study of a trained run would
ignore, the solvers named in `solvers` (configs/solver/<name>.yaml), the checks made before
minutes of training, and `run`, which measures, writes records, logs TensorBoard, draws the plots
and prints the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from irem.build import build_solver
from irem.data_files import add_task_files
from irem.predictor import Predictor
from irem.problem_sets import file_set, levels_to_use, make_sets
from irem.records import log_tensorboard, write_study
from irem.solver import Solver
from irem.study import Study, StudyError, is_energy_model, measure, study_budgets
from irem.tables import format_study
from irem.task import Task

# Overrides that only shape the study's own short training: with run_dir set they would be ignored.
TRAINING_KEYS = ("task", "energy", "train_solver", "solver@train_solver", "objective", "model", "trainer", "resume")


def training_config(cfg: DictConfig) -> DictConfig:
    """The irem-train config of the study's own short training, so its checkpoint is an ordinary
    run that irem-eval and `irem-study run_dir=...` can load."""
    keep = ("task", "energy", "objective", "model", "trainer", "seed", "device", "threads", "resume", "name")
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
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

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
    if not is_energy_model(model):
        raise StudyError(f"A study descends an energy; the run holds a {type(model).__name__}, which has no solver.")
    return {name: build_solver(node).with_base(model.solver).for_energy(model.energy) for name, node in configs.items()}


def _solver_label() -> str:
    from hydra.core.hydra_config import HydraConfig

    return (HydraConfig.get().runtime.choices.get("solver") if HydraConfig.initialized() else None) or "solver"


def study_solvers(
    cfg: DictConfig, model: Predictor, config_dir: str | Path
) -> tuple[dict[str, Solver | Predictor], dict[str, Any]]:
    """What answers the study's sets, by name, and the configs to record: the solvers of `solvers`
    (or the one `solver=` chose, as a multirun job gets it) for an energy model; the model itself,
    through its own predict, for a baseline, which no solver descends."""
    chosen = cfg.get("solver")
    if not is_energy_model(model):
        if chosen is not None:
            raise StudyError(
                f"solver=... descends an energy; the run holds a {type(model).__name__}, which answers through "
                "its own predict. Study it without solver=..."
            )
        return {type(model).__name__: model}, {}
    configs = {str(_solver_label()): chosen} if chosen is not None else solver_configs(list(cfg.solvers), config_dir)
    return build_solvers(model, configs), {k: OmegaConf.to_container(v, resolve=True) for k, v in configs.items()}


def preflight(cfg: DictConfig, task: Task, config_dir: str | Path) -> None:
    """Check solver names, budgets, levels and files before a model is trained for minutes, so a typo
    fails at once (one instance per level is generated: the task itself judges its levels)."""
    if cfg.get("solver") is None:
        solver_configs(list(cfg.solvers), config_dir)
    study_budgets(cfg.budgets)
    make_sets(task, levels_to_use(task, cfg.levels), 1, cfg.seed, mixed=False)
    add_task_files(task, cfg.get("files") or {}, key="files")  # read and checked before the training


def run(
    cfg: DictConfig, task: Task, model: Predictor, out_dir: str | Path, config_dir: str | Path, device: torch.device
) -> Study:
    """irem-study after the model is trained or loaded: sweep, records, TensorBoard, plots, table."""
    solvers, configs = study_solvers(cfg, model, config_dir)
    study = measure(
        task,
        model,
        solvers,
        levels_to_use(task, cfg.levels),
        cfg.budgets,
        instances=cfg.instances,
        mixed=cfg.mixed,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        device=device,
        progress=cfg.progress,
        title=str(cfg.name),
        configs=configs,
        extra_sets=[file_set(task, name) for name in add_task_files(task, cfg.get("files") or {}, key="files")],
    )
    paths = write_study(study, out_dir)
    log_tensorboard(study, out_dir)
    if cfg.plots:
        from irem.plots import study_plots  # matplotlib loads only when a study draws

        paths += study_plots(study, out_dir)
    print(format_study(study))
    print("results: " + " ".join(str(p) for p in paths))
    return study
