"""Tiny trainers and irem-train arguments shared by the reliability tests: a 3x3 inverse and a small
MLP energy, so each test trains in well under a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer

# irem-train arguments of a run that starts in about 3 s and trains for as long as a test needs
TRAIN = [
    "task.size=3",
    "task.test_size=16",
    "energy.width=16",
    "trainer.batch_size=32",
    "trainer.progress=false",
    "eval.budgets=[1]",
    "threads=1",
]


def tiny_trainer(out_dir: Path, iterations: int, init_seed: int = 0, **kwargs: Any) -> Trainer:
    task = Inverse(size=3, test_size=16, val_size=16)
    torch.manual_seed(init_seed)
    energy = MLPEnergy(**task.dims(), width=16)
    model = EnergyModel(
        energy, GradientDescent(step_size=10.0, max_steps=3), IREMObjective(), replay_capacity=64, replay_fraction=0.5
    )
    args = {
        "iterations": iterations,
        "batch_size": 32,
        "lr": 1e-3,
        "seed": 0,
        "log_every": 5,
        "checkpoint_every": 1000,
        "progress": False,
        **kwargs,
    }
    return Trainer(task, model, out_dir, **args)


def same_tensors(a: Any, b: Any) -> bool:
    """Exact equality of nested state (tensors by torch.equal)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(u, v) for u, v in zip(a, b, strict=True))
    return a == b
