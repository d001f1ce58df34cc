"""Issue 16, item 1: a diverged training never leaves non-finite weights in last.pt, stops with a
message naming a checkpoint that exists (or saying there is none), and evaluation refuses a
checkpoint with NaN weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_trainer

from irem.build import load_run
from irem.checkpoint import CheckpointError, load, non_finite_tensors, save_atomic
from irem.errors import TrainingDiverged


def test_lr_10_stops_without_nan_weights_in_the_checkpoint(out_dir: Path) -> None:
    """The issue's repro (inverse 5x5, width 64, batch 32, lr 10), with no loss bound so the run
    goes on until every instance diverges: the loss is a constant with no gradient."""
    from irem.energies.mlp import MLPEnergy
    from irem.energy_model import EnergyModel
    from irem.objectives.irem import IREMObjective
    from irem.solvers.gradient_descent import GradientDescent
    from irem.tasks.matrix import Inverse
    from irem.trainer import Trainer

    task = Inverse(size=5, test_size=16, val_size=16)
    torch.manual_seed(0)
    model = EnergyModel(
        MLPEnergy(**task.dims(), width=64), GradientDescent(step_size=100, max_steps=10), IREMObjective()
    )
    trainer = Trainer(
        task, model, out_dir, iterations=60, batch_size=32, lr=10, checkpoint_every=1, progress=False, max_loss=None
    )
    with pytest.raises(TrainingDiverged, match="Lower trainer.lr") as err:
        trainer.fit()
    path = trainer.checkpoint_path
    assert str(path) in str(err.value) and path.is_file()
    state = load(path)
    assert non_finite_tensors(state["model"]) == []
    assert non_finite_tensors(state["optimizer"]["state"]) == []
    assert f"iteration {state['iteration']}" in str(err.value)


def test_a_loss_without_gradient_stops_naming_the_kept_checkpoint(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 10, checkpoint_every=2)
    original = trainer.model.training_loss
    calls = {"n": 0}

    def all_diverged(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 3:
            return original(*args, **kwargs)
        return torch.tensor(0.0), {}  # what the objective gives when every instance diverged

    trainer.model.training_loss = all_diverged
    with pytest.raises(TrainingDiverged, match="no gradient") as err:
        trainer.fit()
    assert f"{trainer.checkpoint_path} (iteration 2)" in str(err.value)
    assert load(trainer.checkpoint_path)["iteration"] == 2


def test_non_finite_weights_are_never_saved(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 4)
    trainer.fit()
    before = load(trainer.checkpoint_path)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.nan)
    with pytest.raises(TrainingDiverged, match="NaN or inf"):
        trainer.save()
    after = load(trainer.checkpoint_path)
    assert after["iteration"] == before["iteration"] and non_finite_tensors(after["model"]) == []


def test_no_checkpoint_yet_is_said_and_no_file_is_named(out_dir: Path) -> None:
    """With solver.step_size=1e36 the old message named a checkpoint that did not exist."""
    trainer = tiny_trainer(out_dir, 5)
    trainer.model.training_loss = lambda *a, **k: (torch.tensor(math.inf, requires_grad=True), {})
    with pytest.raises(TrainingDiverged, match="No checkpoint was saved yet") as err:
        trainer.fit()
    assert str(trainer.checkpoint_path) not in str(err.value)
    assert not trainer.checkpoint_path.exists()


def test_a_loss_past_max_loss_stops(out_dir: Path) -> None:
    """solver.step_size=1e12 trained on to a loss of 2.9e18 and exited 0."""
    trainer = tiny_trainer(out_dir, 5, max_loss=1e6)
    trainer.model.training_loss = lambda *a, **k: (torch.tensor(2.9e18, requires_grad=True), {})
    with pytest.raises(TrainingDiverged, match=r"exceeds trainer.max_loss=1e\+06"):
        trainer.fit()
    assert trainer.iteration == 0


def test_load_run_refuses_nan_weights(tmp_path: Path, compose_config) -> None:
    from irem.cli import _fit

    cfg = compose_config("train", ["task.size=3", "energy.width=16", "trainer.iterations=1", "trainer.batch_size=8"])
    cfg.trainer.progress, cfg.name = False, "tiny"
    _fit(cfg, str(tmp_path))
    path = tmp_path / "checkpoints" / "last.pt"
    state = load(path)
    key = next(k for k, v in state["model"].items() if isinstance(v, torch.Tensor) and v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], math.nan)
    save_atomic(state, path)
    with pytest.raises(CheckpointError, match=f"{path}.*non-finite.*{key}"):
        load_run(tmp_path)
