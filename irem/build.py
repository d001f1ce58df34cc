"""Build a task and a predictor from a composed config.

Hydra's `_target_` names every class, so this module imports no task, energy, solver or
baseline: the core stays independent of them. Sizes an energy or baseline needs (x_dim, y_dim)
come from the task unless the config sets them, and a mismatch is reported before training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from irem.checkpoint import check_finite_weights, load_or_point_back, run_checkpoint
from irem.config import CONFIG_DIR, check_node, required_keys, valid_keys
from irem.energy import EnergyFunction, check_energy_fits
from irem.energy_model import EnergyModel
from irem.errors import SettingError
from irem.objective import Objective
from irem.predictor import Predictor
from irem.run_identity import upgrade_config
from irem.solver import Solver
from irem.task import Task


def _checked(cfg: DictConfig, group: str, kind: type, **kwargs: Any) -> Any:
    """Instantiate a `_target_` node after checking its keys, and check what it built."""
    check_node(cfg, group)
    try:
        built = instantiate(cfg, **kwargs)
    except InstantiationException as err:  # a constructor refused a value: say which setting, not Hydra's trace
        cause = err.__cause__
        if not isinstance(cause, ValueError):
            raise
        # the node that refused (a transform inside a solver: solver.transforms.noise), from Hydra's message
        found = re.search(r"full_key: (\S+)", str(err))
        path = found.group(1) if found else group
        node = OmegaConf.select(cfg, path.split(".", 1)[1]) if "." in path else cfg
        node = node if isinstance(node, DictConfig) else cfg
        named = [
            str(k) for k in node if not str(k).startswith("_") and re.search(rf"\b{re.escape(str(k))}\b", str(cause))
        ]
        where = ", ".join(f"{path}.{k}={node[k]}" for k in named) if named else f"the {path} config"
        raise SettingError(f"{where} refused by {node._target_}: {cause}") from cause
    if not isinstance(built, kind):
        raise TypeError(f"{group}._target_ {cfg._target_} built a {type(built).__name__}, not an irem {kind.__name__}.")
    return built


def build_task(cfg: DictConfig) -> Task:
    return _checked(cfg, "task", Task)


def _unsupplied(cfg: DictConfig, task: Task) -> list[str]:
    """Parameters of the target without a default that neither the config nor the task's dims set."""
    return [k for k in required_keys(cfg) if k not in cfg and k not in task.dims()]


def _sized(cfg: DictConfig, group: str, task: Task, kind: type) -> Any:
    """Instantiate with the task's dims for every size the config leaves unset; an energy or
    baseline that needs a size the task does not give is refused with the choices that fit."""
    check_node(cfg, group)
    missing = _unsupplied(cfg, task)
    if missing:
        raise SettingError(
            f"{group} {cfg._target_} does not fit task '{task.name}': it needs {', '.join(missing)}, which the task "
            f"does not give (the task gives {', '.join(task.dims()) or 'no sizes'}). {fitting_choices(task)}"
        )
    dims = {k: v for k, v in task.dims().items() if k not in cfg}
    valid = valid_keys(cfg)
    if valid is not None:
        dims = {k: v for k, v in dims.items() if k in valid}
    return _checked(cfg, group, kind, **dims)


def _fits(cfg: DictConfig, group: str, task: Task) -> bool:
    """Whether the config in configs/<group>/ builds for `task` (and, for an energy, scores two of
    its instances): what users choose from, tried as it would be built, so no model has to declare
    the task families it serves. Cheap at the sizes of these configs (well under a second each)."""
    try:
        if _unsupplied(cfg, task):
            return False
        if group == "energy":
            energy = _sized(cfg, group, task, EnergyFunction)
            check_energy_fits(energy, task)
        else:
            model = _sized(cfg, group, task, Predictor)
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                model.eval().predict(task, task.generate(2, task.difficulty, g), [model.default_budget], g)
    except Exception:  # noqa: BLE001  (any failure to build or run means it does not fit)
        return False
    return True


def fitting_choices(task: Task) -> str:
    """The energies and baselines of configs/ that fit `task`, as the overrides that choose them;
    asked only when a choice has failed, so trying each costs nothing on a run that works."""
    fit = {
        group: [
            p.stem for p in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")) if _fits(OmegaConf.load(p), group, task)
        ]
        for group in ("energy", "baseline")
    }
    if not any(fit.values()):
        return f"No energy or baseline in {CONFIG_DIR} fits task '{task.name}'."
    shown = "; ".join(f"{group}=" + " | ".join(names) for group, names in fit.items() if names)
    return f"Choices that fit task '{task.name}': {shown} (e.g. {next(g for g in fit if fit[g])}={next(n for n in fit.values() if n)[0]})."


def build_solver(cfg: DictConfig) -> Solver:
    return _checked(cfg, "solver", Solver)


def build_objective(cfg: DictConfig) -> Objective:
    return _checked(cfg, "objective", Objective)


def build_model(cfg: DictConfig, task: Task) -> Predictor:
    """A baseline when `baseline` is set, else an energy model (energy + solver + objective)."""
    if cfg.get("baseline") is not None:
        return _sized(cfg.baseline, "baseline", task, Predictor)
    if cfg.get("objective") is None:  # a config written before the objective group
        cfg = upgrade_config(cfg)
    energy = _sized(cfg.energy, "energy", task, EnergyFunction)
    try:
        check_energy_fits(energy, task)
    except ValueError as err:
        raise SettingError(f"{err} {fitting_choices(task)}") from err
    model_cfg = cfg.get("model") or {}
    return EnergyModel(energy, build_solver(cfg.solver), build_objective(cfg.objective), **model_cfg)


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[Path, DictConfig, Task, Predictor]:
    """A trained run as its checkpoint saved it: the file, the config it was trained with, its task
    and its model (train mode, as built; callers that evaluate call .eval(), composition freezes it).
    A run trained with an EMA of its weights (trainer.ema_decay) gives the averaged weights: those
    are what it evaluates, here for irem-eval, irem-study and composition alike."""
    path = Path(checkpoint) if checkpoint else run_checkpoint(run_dir)
    state = load_or_point_back(path)
    check_finite_weights(state, path)  # a diverged run's NaN weights would evaluate to plausible-looking rows
    saved = upgrade_config(state["config"])
    task = build_task(saved.task)
    model = build_model(saved, task)
    model.load_state_dict({**state["model"], **state.get("ema", {})})
    return path, saved, task, model
