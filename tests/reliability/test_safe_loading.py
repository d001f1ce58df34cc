"""Issue 16, item 3: checkpoints load with weights_only=True, so a crafted one cannot run code, and
what the trainer stores loads that way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tiny_runs import tiny_trainer

from irem.build import load_run
from irem.checkpoint import CheckpointError, load, resave_trusted


class Payload:
    """Unpickling this creates a file: the proof that loading ran code the file carried."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_crafted_pickle_in_a_checkpoint_does_not_execute(out_dir: Path, tmp_path: Path) -> None:
    trainer = tiny_trainer(out_dir, 1)
    trainer.fit()
    state = load(trainer.checkpoint_path)
    marker = tmp_path / "executed"
    state["config"] = {"task": Payload(marker)}
    torch.save(state, trainer.checkpoint_path)
    with pytest.raises(CheckpointError, match=rf"{trainer.checkpoint_path}.*could run code.*names io.open"):
        load_run(out_dir)
    assert not marker.exists()


def test_everything_the_trainer_stores_loads_safely(out_dir: Path) -> None:
    """An OmegaConf config (as library code may pass) was pickled as an object."""
    config = OmegaConf.create({"task": {"_target_": "irem.tasks.matrix.Inverse", "size": 3}, "seed": 0})
    trainer = tiny_trainer(out_dir, 2, config=config)
    trainer.fit()
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    assert state["config"] == {"task": {"_target_": "irem.tasks.matrix.Inverse", "size": 3}, "seed": 0}
    assert set(state) >= {"model", "optimizer", "generator", "torch_rng", "iteration", "train_seconds", "config"}


def test_an_old_checkpoint_is_refused_with_the_fix_and_resaves(out_dir: Path) -> None:
    """A checkpoint whose config is an OmegaConf object, as older versions wrote it."""
    trainer = tiny_trainer(out_dir, 1)
    trainer.fit()
    state = load(trainer.checkpoint_path)
    state["config"] = OmegaConf.create({"seed": 0})
    torch.save(state, trainer.checkpoint_path)
    with pytest.raises(CheckpointError, match="resave_trusted") as err:
        load(trainer.checkpoint_path)
    assert "omegaconf" in str(err.value)
    resave_trusted(trainer.checkpoint_path)
    assert load(trainer.checkpoint_path)["config"] == {"seed": 0}
