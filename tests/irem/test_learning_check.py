"""The training diagnostic (irem/callbacks.py: LearningCheck): a run whose loss has not moved is told
so once, early, with what to try; a run that learns hears nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from commands import finish, start

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.descent import Descent
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer


def trainer(out_dir: Path, step_size: float, check: int = 30) -> Trainer:
    task = Inverse(size=4, test_size=16, val_size=16)
    torch.manual_seed(0)
    model = EnergyModel(
        MLPEnergy(**task.dims(), width=32),
        Descent(step_size=step_size, max_steps=3),
        IREMObjective(),
        replay_capacity=0,
    )
    return Trainer(task, model, out_dir, iterations=check, batch_size=32, lr=1e-3, progress=False, learning_check=check)


def test_a_descent_that_cannot_move_is_named_with_what_to_try(tmp_path: Path, capsys) -> None:
    """A step so small that the descent never leaves its start: the loss is the start's, whatever the
    weights, and nothing else says so."""
    t = trainer(tmp_path, step_size=1e-12)
    t.fit()
    err = capsys.readouterr().err
    assert "the training loss has not moved in 30 iterations" in err
    assert "solver=gd_normalized" in err and "solver.step_size (now 1e-12)" in err
    notes = json.loads((tmp_path / "train_summary.json").read_text())["notes"]
    assert len(notes) == 1 and "not learning" in notes[0]


def test_a_run_that_learns_hears_nothing(tmp_path: Path, capsys) -> None:
    t = trainer(tmp_path, step_size=10.0, check=60)
    t.fit()
    assert "not moved" not in capsys.readouterr().err
    assert json.loads((tmp_path / "train_summary.json").read_text())["notes"] == []


def test_the_check_can_be_turned_off_and_refuses_a_negative_count(tmp_path: Path, capsys) -> None:
    t = trainer(tmp_path, step_size=1e-12)
    t.callbacks = [c for c in t.callbacks if type(c).__name__ != "LearningCheck"]
    assert all(
        type(c).__name__ != "LearningCheck"
        for c in Trainer(t.task, t.model, tmp_path / "b", learning_check=0).callbacks
    )
    with pytest.raises(Exception, match="learning_check"):
        Trainer(t.task, t.model, tmp_path / "c", learning_check=-1)


def test_irem_train_says_it_for_a_projected_task_whose_steps_are_far_too_long(tmp_path: Path) -> None:
    """The permutation task with a step 10^4 times its answer's scale: every step lands on a corner of
    the simplex, where no gradient flows back (before: 700 iterations at chance without a word)."""
    args = [
        "task=permutation",
        "task.n=4",
        "task.test_size=16",
        "task.val_size=16",
        "energy.width=32",
        "solver.step_size=10000",
        "trainer.iterations=40",
        "trainer.learning_check=40",
        "trainer.batch_size=32",
        "trainer.progress=false",
        "eval.run=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = finish(start("irem-train", args, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "irem-train: the training loss has not moved in 40 iterations" in done.stderr


def test_an_early_spike_does_not_hide_a_drop() -> None:
    """Before: the noise was a standard deviation, which two early spikes (a graph energy's first
    iterations) inflated past a drop from 0.69 to 0.087, and the check fired on a learning run."""
    from irem.callbacks import not_learning

    first = [0.69] * 18 + [500.0, 900.0]
    assert not_learning(None, first, [0.087] * 20, 0.02) is None  # type: ignore[arg-type]
