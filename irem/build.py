"""Build a task and a predictor from a composed config.

Hydra's `_target_` names every class, so this module imports no task, energy, solver or
baseline: the core stays independent of them. Sizes an energy or baseline needs (x_dim, y_dim)
come from the task unless the config sets them, and a mismatch is reported before training.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from irem.config import check_node, valid_keys
from irem.energy import EnergyFunction, check_energy_fits
from irem.energy_model import EnergyModel
from irem.predictor import Predictor
from irem.solver import Solver
from irem.task import Task


def build_task(cfg: DictConfig) -> Task:
    check_node(cfg, "task")
    task = instantiate(cfg)
    if not isinstance(task, Task):
        raise TypeError(f"task._target_ {cfg._target_} built a {type(task).__name__}, not an irem Task.")
    return task


def _sized(cfg: DictConfig, group: str, task: Task) -> Any:
    """Instantiate with the task's dims for every size the config leaves unset."""
    check_node(cfg, group)
    dims = {k: v for k, v in task.dims().items() if k not in cfg}
    valid = valid_keys(cfg)
    if valid is not None:
        dims = {k: v for k, v in dims.items() if k in valid}
    return instantiate(cfg, **dims)


def build_solver(cfg: DictConfig) -> Solver:
    check_node(cfg, "solver")
    solver = instantiate(cfg)
    if not isinstance(solver, Solver):
        raise TypeError(f"solver._target_ {cfg._target_} built a {type(solver).__name__}, not an irem Solver.")
    return solver


def build_model(cfg: DictConfig, task: Task) -> Predictor:
    """A baseline when `baseline` is set, else an energy model (energy + solver)."""
    if cfg.get("baseline") is not None:
        model = _sized(cfg.baseline, "baseline", task)
        if not isinstance(model, Predictor):
            raise TypeError(
                f"baseline._target_ {cfg.baseline._target_} built a {type(model).__name__}, not a Predictor."
            )
        return model
    energy = _sized(cfg.energy, "energy", task)
    if not isinstance(energy, EnergyFunction):
        raise TypeError(
            f"energy._target_ {cfg.energy._target_} built a {type(energy).__name__}, not an EnergyFunction."
        )
    check_energy_fits(energy, task)
    model_cfg = cfg.get("model") or {}
    return EnergyModel(energy, build_solver(cfg.solver), **model_cfg)
