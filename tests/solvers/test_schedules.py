"""Step-size and noise schedules of solvers/gradient_descent.py ("annealed landscapes").

The multiplier is checked at its ends and for its shape; the descent is checked against the
closed form of a quadratic, where step t contracts the error by (1 - step * m_t * w), and the
noise against the same draws made by hand on a flat energy.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from test_gradient_descent import DT, Quadratic, gen
from torch import Tensor

from irem.energy import EnergyFunction
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.gradient_descent import GradientDescent

ANNEALED = ["linear", "cosine", "exponential"]


class Flat(EnergyFunction):
    """Zero energy and gradient everywhere: only the noise moves y."""

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        return (0 * y).sum(dim=1)


@pytest.mark.parametrize("schedule", ANNEALED)
@pytest.mark.parametrize("T", [2, 7, 40])
def test_multiplier_runs_from_one_to_the_final_fraction(schedule: str, T: int) -> None:
    gd = GradientDescent(schedule=schedule, final_fraction=0.2)
    values = [gd.multiplier(t, T) for t in range(1, T + 1)]
    assert values[0] == 1.0
    assert values[-1] == pytest.approx(0.2, rel=1e-12)
    assert all(a > b for a, b in pairwise(values))  # strictly falling, so monotone
    assert gd.multiplier(1, 1) == 1.0  # a one-step budget takes the full step


def test_schedule_shapes() -> None:
    T, f = 11, 0.1
    lin = GradientDescent(schedule="linear", final_fraction=f)
    cos = GradientDescent(schedule="cosine", final_fraction=f)
    exp = GradientDescent(schedule="exponential", final_fraction=f)
    # linear: equal decrements; cosine: half way at the middle step, flat at both ends
    steps = [lin.multiplier(t, T) - lin.multiplier(t + 1, T) for t in range(1, T)]
    assert max(steps) == pytest.approx(min(steps), rel=1e-9)
    assert cos.multiplier(6, T) == pytest.approx((1 + f) / 2, rel=1e-12)
    assert cos.multiplier(1, T) - cos.multiplier(2, T) < cos.multiplier(5, T) - cos.multiplier(6, T)
    # exponential: a constant ratio between consecutive steps
    ratios = [exp.multiplier(t + 1, T) / exp.multiplier(t, T) for t in range(1, T)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9) and ratios[0] == pytest.approx(f ** (1 / (T - 1)))
    assert all(GradientDescent().multiplier(t, T) == 1.0 for t in range(1, T + 1))


@pytest.mark.parametrize("schedule", ANNEALED)
def test_descent_follows_the_schedule(schedule: str) -> None:
    """On E = 0.5 w (y - b)^2 the error after T steps is prod_t (1 - s m_t w) times the first."""
    n, T, s = 3, 9, 0.8
    b = torch.randn(n, 2, generator=gen(0), dtype=DT)
    w = torch.full((n, 2), 1.5, dtype=DT)
    x, y0 = torch.stack([b, w], 1), torch.zeros(n, 2, dtype=DT)
    gd = GradientDescent(step_size=s, max_steps=T, schedule=schedule, final_fraction=0.05)
    out = gd.solve(Quadratic(2), x, y0)
    factor = math.prod(1 - s * gd.multiplier(t, T) * 1.5 for t in range(1, T + 1))
    # the step size is stored as a float32 log, so the comparison allows float32 rounding of it
    torch.testing.assert_close(out.y - b, (y0 - b) * factor, rtol=1e-5, atol=1e-9)
    # the schedule stretches over the budget a solve gets, not over max_steps
    short = gd.solve(Quadratic(2), x, y0, budget=3)
    factor3 = math.prod(1 - s * gd.multiplier(t, 3) * 1.5 for t in range(1, 4))
    torch.testing.assert_close(short.y - b, (y0 - b) * factor3, rtol=1e-5, atol=1e-9)


def test_constant_schedule_is_the_plain_descent() -> None:
    b = torch.randn(4, 3, generator=gen(1), dtype=DT)
    x, y0 = torch.stack([b, torch.ones(4, 3, dtype=DT)], 1), torch.zeros(4, 3, dtype=DT)
    plain = GradientDescent(step_size=0.3, max_steps=6, noise=0.01)
    named = GradientDescent(step_size=0.3, max_steps=6, noise=0.01, schedule="constant", noise_decay=True)
    a = plain.solve(Quadratic(3), x, y0, generator=gen(2))
    c = named.solve(Quadratic(3), x, y0, generator=gen(2))
    assert torch.equal(a.y, c.y) and torch.equal(a.best_y, c.best_y)
    # while an annealed schedule does change the path
    cosine = GradientDescent(step_size=0.3, max_steps=6, schedule="cosine")
    assert not torch.equal(cosine.solve(Quadratic(3), x, y0).y, GradientDescent(0.3, 6).solve(Quadratic(3), x, y0).y)
    # and, depending on the budget, its snapshots are not shorter solves (evaluation must know)
    assert named.snapshots_match_budgets and not cosine.snapshots_match_budgets
    assert not torch.equal(
        cosine.solve(Quadratic(3), x, y0, snapshots=[3]).snapshots[3], cosine.solve(Quadratic(3), x, y0, budget=3).y
    )


@pytest.mark.parametrize("decay", [False, True])
def test_noise_decay_scales_the_noise(decay: bool) -> None:
    n, T, sigma = 5, 6, 0.1
    x, y0 = torch.zeros(n, 2, dtype=DT), torch.zeros(n, 2, dtype=DT)
    gd = GradientDescent(
        step_size=1.0, max_steps=T, noise=sigma, schedule="linear", final_fraction=0.25, noise_decay=decay
    )
    out = gd.solve(Flat(), x, y0, generator=gen(3))
    g = gen(3)
    expected = y0.clone()
    for t in range(1, T + 1):
        eps = torch.randn(y0.shape, generator=g, dtype=DT)
        expected = expected + sigma * (gd.multiplier(t, T) if decay else 1.0) * eps
    torch.testing.assert_close(out.y, expected, rtol=1e-12, atol=1e-12)


def test_adaptive_descent_takes_the_scheduled_steps() -> None:
    b = torch.randn(4, 3, generator=gen(4), dtype=DT)
    x, y0 = torch.stack([b, torch.ones(4, 3, dtype=DT)], 1), torch.zeros(4, 3, dtype=DT)
    gd = GradientDescent(step_size=0.5, max_steps=8, schedule="cosine", final_fraction=0.1)
    ref = gd.solve(Quadratic(3), x, y0)
    out = AdaptiveDescent(gd, rules=[], max_steps=8).solve(Quadratic(3), x, y0)
    assert torch.equal(out.y, ref.y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "step"}, "Unknown schedule 'step'. Valid choices: constant, linear, cosine, exponential."),
        ({"final_fraction": 0.0}, r"final_fraction .* must be in \(0, 1\]"),
        ({"final_fraction": 1.5}, r"final_fraction .* must be in \(0, 1\]"),
    ],
)
def test_invalid_schedule_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GradientDescent(**kwargs)
