"""irem/ema.py and the trainer's EMA of the weights (trainer.ema_decay, trainer.ema_every): the
average's closed form, exact resumption, the EMA weights as what load_run, irem-train's own
evaluation and validate() evaluate, and the refusal of bad settings and non-finite averages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from irem.build import load_run
from irem.checkpoint import CheckpointError, load, save_atomic
from irem.config import TrainerConfig
from irem.ema import WeightEMA, tracked_tensors
from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.errors import SettingError, TrainingDiverged
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer


def tiny_trainer(out_dir: Path, iterations: int, init_seed: int = 0, **kwargs) -> Trainer:
    """A 3x3 inverse and a width-16 MLP energy: each iteration takes milliseconds."""
    task = Inverse(size=3, test_size=16, val_size=32)
    torch.manual_seed(init_seed)
    model = EnergyModel(
        MLPEnergy(**task.dims(), width=16),
        GradientDescent(step_size=10.0, max_steps=3),
        IREMObjective(),
        replay_capacity=64,
        replay_fraction=0.5,
    )
    args = {
        "iterations": iterations,
        "batch_size": 32,
        "lr": 1e-2,
        "seed": 0,
        "log_every": 1000,
        "checkpoint_every": 1000,
        "progress": False,
        "ema_decay": 0.8,
        "ema_every": 3,
        **kwargs,
    }
    return Trainer(task, model, out_dir, **args)


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("scale", torch.ones(3))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("constant", torch.arange(4.0), persistent=False)


def test_the_average_after_k_updates_is_the_closed_form() -> None:
    """ema_k = d^k w_0 + (1 - d) sum_j d^(k-j) w_j, for parameters and float buffers; an integer
    buffer is copied; a non-persistent buffer (a constant) is not tracked."""
    model, d = Toy(), 0.9
    with torch.no_grad():
        model.lin.weight.fill_(2.0)
        model.scale.fill_(-1.0)
    ema = WeightEMA(model, d)
    assert set(ema.state_dict()) == {"lin.weight", "lin.bias", "scale", "count"}
    assert set(ema.state_dict()) == set(model.state_dict())
    w0_bias = model.lin.bias.detach().clone()
    values = [3.0, -1.0, 0.5, 7.0, 4.0]
    for j, v in enumerate(values, start=1):
        with torch.no_grad():
            model.lin.weight.fill_(v)
            model.lin.bias.fill_(v)
            model.scale.fill_(10 * v)
            model.count.fill_(j)
        ema.update(model)
    k = len(values)
    expect = d**k * 2.0 + (1 - d) * sum(d ** (k - j) * v for j, v in enumerate(values, start=1))
    expect_scale = d**k * -1.0 + (1 - d) * sum(d ** (k - j) * 10 * v for j, v in enumerate(values, start=1))
    expect_bias = d**k * w0_bias + (1 - d) * sum(d ** (k - j) * v for j, v in enumerate(values, start=1))
    s = ema.state_dict()
    torch.testing.assert_close(s["lin.weight"], torch.full((1, 2), expect), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s["lin.bias"], expect_bias, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s["scale"], torch.full((3,), expect_scale), rtol=1e-6, atol=1e-6)
    assert s["count"].dtype == torch.long and int(s["count"]) == k
    assert not torch.equal(s["lin.weight"], model.lin.weight.detach())  # an average, not the last value


def test_decay_zero_follows_the_weights_and_decay_one_is_refused() -> None:
    model = Toy()
    ema = WeightEMA(model, 0.0)
    with torch.no_grad():
        model.lin.weight.fill_(5.0)
    ema.update(model)
    assert torch.equal(ema.state_dict()["lin.weight"], model.lin.weight.detach())
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        WeightEMA(model, 1.0)


def test_the_trainer_averages_every_k_steps_from_the_starting_weights(out_dir: Path) -> None:
    """With ema_every=3 over 8 iterations the average takes the weights after steps 3 and 6, from
    the weights training started with: checked against the closed form of the recorded weights."""
    trainer = tiny_trainer(out_dir, 8, ema_every=3, ema_decay=0.7, ema_warmup=False)
    start = float_state(trainer.model)
    after_step: list[dict[str, torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(lambda *_: after_step.append(float_state(trainer.model)))
    trainer.fit()
    assert len(after_step) == 8
    d, used = 0.7, [after_step[2], after_step[5]]  # iterations 3 and 6
    ema = trainer.ema.state_dict()
    for key, got in ema.items():
        expect = d**2 * start[key] + (1 - d) * (d * used[0][key] + used[1][key])
        torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6, msg=key)
    assert set(ema) == set(start)
    assert not same(ema, float_state(trainer.model))


def test_resume_with_ema_equals_uninterrupted(tmp_path: Path) -> None:
    """20 iterations in one go vs 10, stop, resume to 20 (10 is not a multiple of ema_every=3, so
    the update count must follow the iteration): model, EMA and optimizer bit for bit."""
    straight = tiny_trainer(tmp_path / "straight", 20)
    straight.fit()
    first = tiny_trainer(tmp_path / "resumed", 10)
    first.fit()
    assert "ema" in load(first.checkpoint_path)
    second = tiny_trainer(tmp_path / "resumed", 20, init_seed=123)  # other initial weights: all from the checkpoint
    torch.manual_seed(999)
    second.fit(resume=True)
    assert second.iteration == straight.iteration == 20
    assert same(float_state(straight.model), float_state(second.model))
    assert same(straight.ema.state_dict(), second.ema.state_dict())
    assert same(load(straight.checkpoint_path)["ema"], load(second.checkpoint_path)["ema"])
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert all(same(sa[i], sb[i]) for i in sa)


def test_no_ema_by_default(out_dir: Path) -> None:
    assert TrainerConfig().ema_decay is None and TrainerConfig().ema_every == 1
    trainer = tiny_trainer(out_dir, 2, ema_decay=None)
    trainer.fit()
    assert trainer.ema is None and "ema" not in load(trainer.checkpoint_path)


@pytest.fixture
def ema_run(tmp_path: Path, compose_config):
    """A run trained the way irem-train trains it (irem.cli._fit), with an EMA, and its trainer."""
    from irem.cli import _fit

    cfg = compose_config(
        "train",
        [
            "task.size=3",
            "energy.width=16",
            "trainer.iterations=6",
            "trainer.batch_size=8",
            "trainer.ema_decay=0.5",
            "trainer.ema_every=2",
        ],
    )
    cfg.trainer.progress, cfg.name = False, "tiny"
    _, model, trainer = _fit(cfg, str(tmp_path))
    return tmp_path, model, trainer


def test_load_run_and_irem_train_evaluate_the_ema_weights(ema_run) -> None:
    run_dir, trained_model, _ = ema_run
    state = load(run_dir / "checkpoints" / "last.pt")
    raw = {k: v for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    assert set(state["ema"]) == set(raw)
    assert not same(state["ema"], raw)  # else the test shows nothing
    _, _, _, model = load_run(run_dir)
    assert same(float_state(model), state["ema"])
    assert same(float_state(trained_model), state["ema"])  # what irem-train's own evaluation gets


def test_validate_evaluates_the_ema_and_puts_the_weights_back(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 9, ema_decay=0.5)
    trainer.fit()
    raw = float_state(trainer.model)
    with_ema = trainer.validate()
    assert same(float_state(trainer.model), raw)  # bit for bit
    assert trainer.model.training
    ema = trainer.ema
    trainer.ema = None
    with_raw = trainer.validate()
    ema.copy_to(trainer.model)
    assert trainer.validate() == with_ema  # the same metric as the EMA weights themselves give
    assert with_raw != with_ema


@pytest.mark.parametrize("decay", [1.5, -0.1, 1.0, math.nan])
def test_a_bad_ema_decay_is_refused(out_dir: Path, decay: float) -> None:
    with pytest.raises(SettingError, match=r"trainer\.ema_decay=.* is out of range: it must be null \(no EMA\)"):
        TrainerConfig(ema_decay=decay)
    with pytest.raises(SettingError, match=r"trainer\.ema_decay"):
        tiny_trainer(out_dir, 1, ema_decay=decay)


@pytest.mark.parametrize("every", [0, 1.5, -2])
def test_a_bad_ema_every_is_refused(every) -> None:
    with pytest.raises(SettingError, match=r"trainer\.ema_every=.* is out of range: it must be a whole number"):
        TrainerConfig(ema_every=every)


def test_a_non_finite_average_is_neither_saved_nor_loaded(out_dir: Path) -> None:
    trainer = tiny_trainer(out_dir, 3, checkpoint_every=1)
    trainer.fit()
    good = load(trainer.checkpoint_path)
    key = next(iter(trainer.ema.state_dict()))
    trainer.ema.state_dict()[key].fill_(math.inf)
    with pytest.raises(TrainingDiverged, match=f"ema.{key}"):
        trainer.save()
    assert same(load(trainer.checkpoint_path)["ema"], good["ema"])  # the good checkpoint is kept
    bad = {**good, "ema": {**good["ema"], key: torch.full_like(good["ema"][key], math.nan)}}
    save_atomic(bad, trainer.checkpoint_path)
    with pytest.raises(CheckpointError, match=f"non-finite.*ema.{key}"):
        tiny_trainer(out_dir, 5).fit()


def test_load_run_refuses_a_non_finite_average(ema_run) -> None:
    run_dir = ema_run[0]
    path = run_dir / "checkpoints" / "last.pt"
    state = load(path)
    key = next(iter(state["ema"]))
    state["ema"][key] = torch.full_like(state["ema"][key], math.nan)
    save_atomic(state, path)
    with pytest.raises(CheckpointError, match=f"{path}.*non-finite.*ema.{key}"):
        load_run(run_dir)


def test_a_checkpoint_from_before_the_ema_settings_resumes_at_their_defaults() -> None:
    from irem.run_identity import same_run as _same_run

    saved = {"trainer": {"lr": 1e-3}, "seed": 0}
    assert _same_run(saved, {"trainer": {"lr": 1e-3, "ema_decay": None, "ema_every": 1}, "seed": 0}) == []
    assert _same_run(saved, {"trainer": {"lr": 1e-3, "ema_decay": 0.995, "ema_every": 10}, "seed": 0}) == [
        "trainer.ema_decay",
        "trainer.ema_every",
    ]


def test_tracked_tensors_are_the_state_dict_tensors() -> None:
    task = Inverse(size=3, test_size=4, val_size=4)
    model = EnergyModel(
        MLPEnergy(**task.dims(), width=8), GradientDescent(step_size=1.0, learnable_step=True), IREMObjective()
    )
    tensors = {k for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    assert {k for k, _ in tracked_tensors(model)} == tensors


def test_warmup_ramps_the_decay_by_the_update_number(out_dir: Path) -> None:
    """ema_pytorch's warm-up: update u uses min(decay, 1 - (1 + u)^(-2/3)); the trainer numbers the
    updates from the iteration (iterations 3 and 6 are updates 1 and 2 with ema_every=3)."""
    from irem.ema import warmed_decay

    assert warmed_decay(0.995, 1) == pytest.approx(1 - 2 ** (-2 / 3))
    assert warmed_decay(0.995, 10**6) == 0.995
    trainer = tiny_trainer(out_dir, 8, ema_every=3, ema_decay=0.995)
    start = float_state(trainer.model)
    after_step: list[dict[str, torch.Tensor]] = []
    trainer.optimizer.register_step_post_hook(lambda *_: after_step.append(float_state(trainer.model)))
    trainer.fit()
    d1, d2 = warmed_decay(0.995, 1), warmed_decay(0.995, 2)
    for key, got in trainer.ema.state_dict().items():
        expect = d2 * (d1 * start[key] + (1 - d1) * after_step[2][key]) + (1 - d2) * after_step[5][key]
        torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6, msg=key)
