"""Issue 16, item 8 (the trainer's part): a stop by signal saves only at an iteration boundary,
whatever more signals arrive (during the iteration or the save), and ends with that signal's exit
status and no traceback (a full disk: tests/reliability/test_disk_full.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch
from commands import finish, start
from tiny_runs import TRAIN, same_tensors, tiny_trainer

from irem.checkpoint import load
from irem.errors import TrainingInterrupted
from irem.trainer import Trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Trainer:
    trainer = tiny_trainer(tmp_path_factory.mktemp("straight"), 12)
    trainer.fit()
    return trainer


def same_training(a: Trainer, b: Trainer) -> bool:
    return (
        a.iteration == b.iteration
        and same_tensors(a.model.state_dict(), b.model.state_dict())
        and same_tensors(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"])
        and torch.equal(a.generator.get_state(), b.generator.get_state())
    )


def test_two_sigints_in_one_iteration_still_resume_exactly(uninterrupted: Trainer, out_dir: Path, capsys) -> None:
    """The second Ctrl-C used to raise at once, and the state it saved was mid-iteration."""
    trainer = tiny_trainer(out_dir, 12)
    original, calls = trainer.model.training_loss, {"n": 0}

    def twice(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        out = original(*args, **kwargs)
        if calls["n"] == 5:
            time.sleep(0.1)
            signal.raise_signal(signal.SIGINT)
        return out

    trainer.model.training_loss = twice
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.signum == signal.SIGINT
    assert load(trainer.checkpoint_path)["iteration"] == trainer.iteration == 5  # iteration 5 finished first
    assert "Already stopping" in capsys.readouterr().err
    resumed = tiny_trainer(out_dir, 12, init_seed=3)
    resumed.fit()
    assert same_training(uninterrupted, resumed)


def test_a_signal_during_the_save_does_not_abort_it(out_dir: Path, monkeypatch) -> None:
    trainer = tiny_trainer(out_dir, 12, checkpoint_every=4)
    real_save = torch.save
    saves = {"n": 0}

    def signalled_save(obj, f, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:  # the interrupt's save: a second signal arrives while it is written
            signal.raise_signal(signal.SIGTERM)
        return real_save(obj, f, *args, **kwargs)

    original, calls = trainer.model.training_loss, {"n": 0}

    def first_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            signal.raise_signal(signal.SIGTERM)
        return original(*args, **kwargs)

    trainer.model.training_loss = first_signal
    monkeypatch.setattr(torch, "save", signalled_save)
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.fit()
    assert stop.value.signum == signal.SIGTERM
    assert saves["n"] == 2  # at iteration 4, then the interrupt's own at 6, both written through
    assert load(trainer.checkpoint_path)["iteration"] == trainer.iteration == 6


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_exits_with_the_signals_status(signum: int, tmp_path: Path, monkeypatch) -> None:
    """irem-train's entry point, in this process, around a training the signal stopped."""
    import sys

    import irem.cli

    def stopped() -> None:
        raise TrainingInterrupted("Interrupted at iteration 3; checkpoint saved to ...", signum)

    monkeypatch.setattr(irem.cli, "_train", stopped)
    monkeypatch.setattr(sys, "argv", ["irem-train", *TRAIN, f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as stop:
        irem.cli.train()
    assert stop.value.code == 128 + signum  # 130, 143: what a shell reports for the signal
    assert not (tmp_path / "run" / "train.lock").exists()


@pytest.mark.slow
def test_sigint_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """The same, end to end (about 5 s); SIGTERM's is in test_run_lock.py."""
    run_dir = tmp_path / "run"
    proc = start(
        "irem-train",
        [*TRAIN, "trainer.iterations=1000000", "trainer.checkpoint_every=1", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    ckpt = run_dir / "checkpoints" / "last.pt"
    end = time.monotonic() + 60
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < end, finish(proc).stderr
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    done = finish(proc)
    assert done.returncode == 130, done.stderr
    assert "checkpoint saved" in done.stdout
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
