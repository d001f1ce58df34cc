"""irem/trainer.py's optimiser: warm-up and cosine learning rates, AdamW, and an energy model's
learnable step size at its own learning-rate multiplier."""

from __future__ import annotations

import math

import pytest
import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.schedules import Schedule, warmup_then
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer


def lr_factor(
    step: int,
    total: int,
    warmup: int = 0,
    schedule: str = "constant",
    min_fraction: float = 0.1,
    time_fraction: float = 0.0,
) -> float:
    return warmup_then(Schedule(schedule, min_fraction), step, total, warmup, time_fraction)


def test_warmup_rises_linearly_then_cosine_falls_to_the_floor() -> None:
    f = [lr_factor(i, 110, warmup=10, schedule="cosine", min_fraction=0.1) for i in range(110)]
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))  # monotone decay
    assert lr_factor(110, 110, warmup=10, schedule="cosine", min_fraction=0.1) == pytest.approx(0.1)


def test_time_fraction_drives_the_decay_of_a_wall_clock_run() -> None:
    # iteration 5 of a nominal 10**6, but 3/4 of the time limit spent: the decay is 3/4 through
    got = lr_factor(5, 10**6, schedule="cosine", min_fraction=0.0, time_fraction=0.75)
    assert got == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(5, 10**6, schedule="constant", time_fraction=0.75) == 1.0


def model(learnable: bool = True, multiplier: float = 1.0) -> tuple[Inverse, EnergyModel]:
    torch.manual_seed(0)
    task = Inverse(size=3, test_size=8, val_size=8)
    solver = GradientDescent(step_size=10.0, max_steps=2, learnable_step=learnable)
    return task, EnergyModel(
        MLPEnergy(**task.dims(), width=16), solver, IREMObjective(), replay_capacity=0, step_lr_multiplier=multiplier
    )


def test_step_size_gets_its_own_learning_rate(tmp_path) -> None:
    task, m = model(multiplier=30.0)
    trainer = Trainer(task, m, tmp_path, iterations=1, lr=1e-3, optimizer="adamw", weight_decay=0.01, progress=False)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 3e-2])
    assert groups[1]["params"] == [m.solver.log_step_size]
    # every trainable parameter is in exactly one group
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters() if p.requires_grad)


def test_warmup_sets_the_rate_of_each_step(tmp_path) -> None:
    task, m = model(multiplier=10.0)
    trainer = Trainer(task, m, tmp_path, iterations=3, lr=1e-3, warmup=4, batch_size=4, progress=False)
    trainer.fit()
    # the last step (iteration index 2) ran at 3/4 of each group's base rate
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.75e-3, 0.75e-2])


def test_unknown_optimizer_and_schedule_list_the_choices(tmp_path) -> None:
    task, m = model(learnable=False)
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'. Valid choices: adam, adamw, sgd"):
        Trainer(task, m, tmp_path, optimizer="lion")
    with pytest.raises(ValueError, match="Unknown lr_schedule 'step'. Valid choices: constant, linear, cosine, expon"):
        Trainer(task, m, tmp_path, lr_schedule="step")
    with pytest.raises(ValueError, match="step_lr_multiplier must be positive"):
        EnergyModel(MLPEnergy(**task.dims(), width=4), GradientDescent(), IREMObjective(), step_lr_multiplier=0.0)
