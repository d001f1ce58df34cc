"""baselines/rrn.py: the recurrent relational network answers Sudoku at every step budget, keeps
the givens, trains with the trainer's machinery and lowers its loss. (It reads Sudoku boards, not
flat vectors, so the dense baselines' shared tests in test_baselines.py do not cover it.)"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from irem.baselines.rrn import RRN
from irem.tasks.sudoku import Sudoku


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Sudoku:
    return Sudoku(test_size=8, val_size=8, cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_builds_from_its_config_and_answers_every_budget(task: Sudoku, compose_config) -> None:
    torch.manual_seed(0)
    model = instantiate(compose_config("train", ("task=sudoku", "baseline=rrn")).baseline)
    assert isinstance(model, RRN) and model.default_budget == 16
    p = task.split("test")
    answers = model.predict(task, p, [0, 3, 20], gen(0)).answers  # past the trained steps too
    assert set(answers) == {"0", "3", "20"}
    for y in answers.values():
        assert y.shape == (len(p), 81, 9) and not y.requires_grad
        assert torch.equal(y[p.constraint.mask], p.constraint.values[p.constraint.mask])
    assert not torch.equal(answers["3"], answers["20"])
    again = model.predict(task, p, [3], gen(1)).answers["3"]
    assert torch.equal(again, answers["3"])  # no randomness: the budget alone decides
    with pytest.raises(ValueError, match="budget"):
        model.predict(task, p, [-1], gen(0))


def test_training_at_every_step_lowers_the_loss(task: Sudoku) -> None:
    torch.manual_seed(0)
    model = RRN(width=32, steps=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    p = task.split("val")

    def val_ce() -> float:
        return float(task.loss(p, model.predict(task, p, [4], gen(0)).answers["4"]).mean())

    before = val_ce()
    g = gen(2)
    for _ in range(60):
        loss, logs = model.training_loss(task, task.sample(32, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "loss_final" in logs
    assert val_ce() < 0.95 * before


def test_the_lstm_state_keeps_answers_bounded_far_past_the_trained_steps(task: Sudoku) -> None:
    torch.manual_seed(0)
    model = RRN(width=16, steps=4)
    p = task.split("test")
    y = model.predict(task, p, [200], gen(0)).answers["200"]
    free = ~p.constraint.mask
    bound = model.readout.weight.abs().sum(1) + model.readout.bias.abs()  # |h| < 1 elementwise
    assert torch.isfinite(y).all()
    assert (y.abs() <= bound + 1e-5)[free].all()
