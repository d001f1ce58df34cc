"""The maze baselines: DT-net's progressive loss against hand-computed values, its iterations past
training, and the feed-forward conv net's single answer; both read mazes of any size."""

from __future__ import annotations

import math

import pytest
import torch

from irem.baselines.conv_feedforward import ConvFeedForward
from irem.baselines.dt_net import DTNet
from irem.tasks.maze import Maze


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task() -> Maze:
    return Maze(test_size=4, val_size=4)


def test_progressive_loss_of_a_silent_net_is_log_2(task: Maze) -> None:
    """All weights zero: every open pixel scores 0 for both classes, a cross-entropy of ln 2 in both
    terms, so (1 - alpha) ln 2 + alpha ln 2 = ln 2."""
    net = DTNet(width=4, max_iters=3, alpha=0.3)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    loss, logs = net.training_loss(task, task.generate(2, 9, gen(0)), gen(1))
    assert math.isclose(float(loss.detach()), math.log(2), rel_tol=1e-6)
    assert math.isclose(logs["loss_progressive"], math.log(2), rel_tol=1e-6)


def test_progressive_loss_matches_its_definition(task: Maze) -> None:
    """(1 - alpha) * loss after max_iters + alpha * loss after k iterations from the detached thought
    after n, with n uniform in 0..max_iters-1 and k in 1..max_iters-n drawn from the generator."""
    torch.manual_seed(0)
    net = DTNet(width=4, max_iters=5, alpha=0.25)
    p = task.generate(3, 9, gen(0))
    loss, _ = net.training_loss(task, p, gen(7))
    g = gen(7)
    n = int(torch.randint(0, 5, (1,), generator=g))
    k = int(torch.randint(1, 5 - n + 1, (1,), generator=g))
    x = p.x.float()
    thought = net.projection(x)
    states = [thought]
    for _ in range(5):
        thought = net.recur(torch.cat([thought, x], 1))
        states.append(thought)
    full = task.loss(p, net.scores(p, states[-1])).mean()
    t = states[n].detach()
    for _ in range(k):
        t = net.recur(torch.cat([t, x], 1))
    progressive = task.loss(p, net.scores(p, t)).mean()
    torch.testing.assert_close(loss, 0.75 * full + 0.25 * progressive)


def test_progressive_term_does_not_train_the_first_iterations(task: Maze) -> None:
    """alpha = 1 and a detached start after n > 0 iterations: no gradient reaches the projection."""
    torch.manual_seed(0)
    net = DTNet(width=4, max_iters=4, alpha=1.0)
    p = task.generate(2, 9, gen(0))
    for seed in range(20):
        g = gen(seed)
        if int(torch.randint(0, 4, (1,), generator=g)) > 0:
            break
    net.zero_grad()
    loss, _ = net.training_loss(task, p, gen(seed))
    loss.backward()
    assert all(q.grad is None or not q.grad.any() for q in net.projection.parameters())
    assert any(q.grad is not None and q.grad.any() for q in net.recur.parameters())


def test_dt_net_runs_past_its_training_iterations(task: Maze) -> None:
    torch.manual_seed(0)
    net = DTNet(width=4, max_iters=3)
    for size in (9, 21):
        p = task.generate(2, size, gen(size))
        out = net.predict(task, p, [1, 3, 10], gen(0)).answers
        assert set(out) == {"1", "3", "10"} and out["10"].shape == (2, size + 2, size + 2, 2)
        alone = net.predict(task, p, [10], gen(0)).answers["10"]
        torch.testing.assert_close(alone, out["10"])
        wall = ~(p.x.amax(1) > 0.5)
        assert (out["10"].argmax(-1)[wall] == 0).all()  # walls kept off the path


def test_feedforward_answers_once_at_any_size(task: Maze) -> None:
    torch.manual_seed(0)
    net = ConvFeedForward(width=4, depth=1)
    for size in (9, 21):
        p = task.generate(2, size, gen(size))
        out = net.predict(task, p, [1, 5, 50], gen(0)).answers
        assert torch.equal(out["1"], out["50"]) and out["1"].shape == (2, size + 2, size + 2, 2)


def test_parameters_match() -> None:
    dt = sum(q.numel() for q in DTNet(width=32).parameters())
    ff = sum(q.numel() for q in ConvFeedForward(width=30, depth=3).parameters())
    assert abs(dt - ff) / dt < 0.05


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [(DTNet, "width", 0), (DTNet, "max_iters", 0), (DTNet, "alpha", 1.5), (ConvFeedForward, "depth", 0)],
)
def test_bad_arguments_are_named(cls, key: str, value) -> None:
    with pytest.raises(ValueError, match=key):
        cls(**{key: value})
