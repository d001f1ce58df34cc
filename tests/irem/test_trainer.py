"""irem/trainer.py and irem/checkpoint.py: exact resumption, atomic checkpoints, interruption,
TensorBoard logging, and that training a tiny energy model lowers its loss."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from irem.checkpoint import CheckpointError, load, save_atomic
from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer


def tiny_task() -> Inverse:
    return Inverse(size=4, test_size=16, val_size=64)


def tiny_model(task: Inverse, init_seed: int = 0) -> EnergyModel:
    torch.manual_seed(init_seed)
    energy = MLPEnergy(**task.dims(), width=32)
    return EnergyModel(
        energy, GradientDescent(step_size=10.0, max_steps=3), IREMObjective(), replay_capacity=100, replay_fraction=0.5
    )


def tiny_trainer(out_dir: Path, iterations: int, init_seed: int = 0, **kwargs) -> Trainer:
    task = tiny_task()
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
    return Trainer(task, tiny_model(task, init_seed), out_dir, **args)


def assert_equal_state(a, b, where: str = "state") -> None:
    """Exact equality of nested state (tensors compared with torch.equal)."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        assert same, f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {a.keys()} vs {b.keys()}"
        for k in a:
            assert_equal_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_equal_state(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training(a: Trainer, b: Trainer) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert "replay._extra_state" in sa
    assert sa["replay._extra_state"]["size"] == 100  # the buffer filled and wrapped around
    assert_equal_state(sa, sb, "model")
    assert_equal_state(a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"], "optimizer")
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.iteration == b.iteration


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Trainer:
    """20 iterations in one go, the reference every resumed run must match exactly."""
    trainer = tiny_trainer(tmp_path_factory.mktemp("straight"), 20)
    summary = trainer.fit()
    assert summary["iterations"] == 20
    return trainer


def test_resume_equals_uninterrupted(uninterrupted: Trainer, out_dir: Path) -> None:
    first = tiny_trainer(out_dir, 10)
    first.fit()
    assert load(first.checkpoint_path)["iteration"] == 10
    # a new trainer and a new model (initialised differently) resume from the checkpoint
    second = tiny_trainer(out_dir, 20, init_seed=123)
    torch.manual_seed(999)  # the global RNG is part of the checkpoint too
    summary = second.fit(resume=True)
    assert summary["iterations"] == 20
    assert_same_training(uninterrupted, second)


def test_resume_false_starts_over(out_dir: Path) -> None:
    tiny_trainer(out_dir, 4).fit()
    again = tiny_trainer(out_dir, 2)
    again.fit(resume=False)
    assert again.iteration == 2
    assert load(again.checkpoint_path)["iteration"] == 2


def interrupt_on_call(trainer: Trainer, call: int, after: bool) -> None:
    """Send SIGINT (Ctrl-C) from inside the `call`-th training_loss, before or after its work.

    A real signal, so the trainer may either let KeyboardInterrupt land there or defer it to the
    end of the iteration; either way the checkpoint must describe a whole number of iterations.
    """
    calls = {"n": 0}
    original = trainer.model.training_loss

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call and not after:
            signal.raise_signal(signal.SIGINT)
        out = original(*args, **kwargs)
        if calls["n"] == call and after:
            signal.raise_signal(signal.SIGINT)
        return out

    trainer.model.training_loss = wrapped


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C behaviour for the test, whatever the runner installed."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_keyboard_interrupt_leaves_checkpoint(out_dir: Path, default_sigint, capsys) -> None:
    trainer = tiny_trainer(out_dir, 20)
    interrupt_on_call(trainer, 6, after=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load(trainer.checkpoint_path)
    assert state["iteration"] == trainer.iteration
    assert trainer.iteration in (5, 6)  # stopped before the sixth iteration, or right after it
    assert_equal_state(state["model"], trainer.model.state_dict(), "model")
    assert f"Interrupted at iteration {trainer.iteration}" in capsys.readouterr().out


def test_interrupt_mid_iteration_then_resume_equals_uninterrupted(
    uninterrupted: Trainer, out_dir: Path, default_sigint
) -> None:
    """Ctrl-C lands during the heavy part of an iteration, after its batch was drawn (and the replay
    buffer fed); the resumed run must still continue exactly."""
    trainer = tiny_trainer(out_dir, 20)
    interrupt_on_call(trainer, 6, after=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load(trainer.checkpoint_path)["iteration"] in (5, 6)
    resumed = tiny_trainer(out_dir, 20, init_seed=7)
    resumed.fit(resume=True)
    assert_same_training(uninterrupted, resumed)


def test_checkpoint_written_atomically(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = tiny_trainer(out_dir, 3)
    trainer.fit()
    ckpt_dir = trainer.checkpoint_path.parent
    assert [p.name for p in ckpt_dir.iterdir()] == ["last.pt"]
    before = load(trainer.checkpoint_path)

    trainer.iteration = 99  # a later state that must not half-replace the good one

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    monkeypatch.undo()

    assert [p.name for p in ckpt_dir.iterdir()] == ["last.pt"]  # no leftover temp file
    after = load(trainer.checkpoint_path)
    assert after["iteration"] == 3
    assert_equal_state(after["model"], before["model"], "model")


def test_save_atomic_replaces_and_load_reports(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.pt"
    save_atomic({"a": torch.ones(2)}, path)
    save_atomic({"a": torch.zeros(2)}, path)
    assert torch.equal(load(path)["a"], torch.zeros(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load(tmp_path / "junk.pt")


def test_tensorboard_events_and_summary(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 10, val_every=5)
    trainer.fit()
    events = list((out_dir / "tb").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out_dir / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/it_per_s", "val/metric"} <= set(tags)
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10]
    summary = json.loads((out_dir / "train_summary.json").read_text())
    assert summary["iterations"] == 10 and summary["final_loss"] > 0


def test_training_lowers_the_loss(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 100, log_every=1000)
    before = trainer.validate()
    summary = trainer.fit()
    after = trainer.validate()
    assert after < 0.7 * before
    assert summary["final_loss"] < before


def test_time_limit_stops_early(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 1000, time_limit=0.0)
    assert trainer.fit()["iterations"] == 0
    assert trainer.outcome() == (
        "trained 0 iterations in 0.0s, final loss unknown; stopped by trainer.time_limit=0s "
        "(the training time of all invocations of the run)"
    )


def test_each_fit_says_what_it_did(out_dir: Path) -> None:
    """Issue 32, item 9: a rerun of a finished run printed the old "trained N iterations in Xs" as if
    it had trained them, and a resume whose time limit was spent trained nothing without a word."""
    first = tiny_trainer(out_dir, 2)
    first.fit()
    assert first.outcome().startswith("trained 2 iterations in ") and ", final loss " in first.outcome()
    more = tiny_trainer(out_dir, 4)
    more.fit(resume=True)
    assert more.outcome().startswith("resumed at iteration 2: trained 2 iterations in ")
    assert "(4 iterations in " in more.outcome()
    again = tiny_trainer(out_dir, 4)
    again.fit(resume=True)
    assert again.outcome().startswith("resumed a finished run: evaluating only (it trained 4 iterations in ")
    spent = tiny_trainer(out_dir, 1000, time_limit=again.train_seconds / 2)
    assert spent.fit(resume=True)["iterations"] == 4
    assert spent.outcome().startswith(f"resumed a run whose trainer.time_limit={again.train_seconds / 2:g}s is spent")
    assert "counts the training time of every invocation" in spent.outcome()


def test_time_limit_counts_every_invocation_of_a_run(out_dir: Path) -> None:
    """The limit is the run's, not the invocation's: a resume trains for what is left of it, so a killed
    run resumed by the same command stops where it would have."""
    first = tiny_trainer(out_dir, 3)
    first.fit()
    resumed = tiny_trainer(out_dir, 1000, time_limit=first.train_seconds + 0.3)
    resumed.fit(resume=True)
    assert resumed.iteration > 3
    assert first.train_seconds + 0.3 <= resumed.train_seconds < first.train_seconds + 0.3 + 2.0
    assert resumed.train_seconds - resumed.start_seconds < 0.3 + 2.0


@pytest.mark.parametrize(
    "kwargs", [{"iterations": -1}, {"batch_size": 0}, {"lr": 0.0}], ids=["iterations", "batch", "lr"]
)
def test_invalid_trainer_arguments(out_dir: Path, kwargs) -> None:
    with pytest.raises(ValueError, match="Trainer"):
        tiny_trainer(out_dir, **{"iterations": 1, **kwargs})


def test_non_finite_loss_stops_with_clear_error(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 5)

    def nan_loss(*args, **kwargs):
        return torch.tensor(float("nan"), requires_grad=True), {}

    trainer.model.training_loss = nan_loss
    with pytest.raises(FloatingPointError, match="iteration 0"):
        trainer.fit()


def test_checkpoint_keeps_ordinary_file_permissions(tmp_path: Path) -> None:
    """The temp file of an atomic write must not leave the checkpoint private (mkstemp's 0600)."""
    path = save_atomic({"a": torch.ones(1)}, tmp_path / "c.pt")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert oct(path.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)


def test_a_misspelt_setting_is_refused_with_the_valid_ones(out_dir) -> None:
    task = tiny_task()
    with pytest.raises(ValueError) as err:
        Trainer(task, tiny_model(task), out_dir, iteratons=3)
    message = str(err.value)
    assert "Unknown key 'trainer.iteratons'" in message and "Did you mean 'iterations'?" in message
    for key in ("iterations", "batch_size", "lr", "checkpoint_every", "time_limit"):
        assert key in message


def test_library_defaults_are_the_config_schemas(out_dir) -> None:
    """One copy of each default: a Trainer built without settings uses TrainerConfig's."""
    from dataclasses import fields

    from irem.config import TrainerConfig

    task = tiny_task()
    trainer = Trainer(task, tiny_model(task), out_dir)
    defaults = TrainerConfig()
    for name in ("iterations", "batch_size", "checkpoint_every", "log_every", "val_every", "warmup", "time_limit"):
        assert getattr(trainer.settings, name) == getattr(defaults, name), name
    assert trainer.optimizer.param_groups[0]["lr"] == defaults.lr
    assert {f.name for f in fields(TrainerConfig)} >= {"iterations", "checkpoint_every", "lr"}
