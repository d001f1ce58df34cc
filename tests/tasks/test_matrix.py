"""tasks/matrix.py against numpy / scipy: ground truth, difficulty and the input distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.matrix import Addition, Inverse, LowRank


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- addition -------------------------------------------------------------------------------------


def test_addition_target_is_numpy_sum() -> None:
    task = Addition(size=5, test_size=8)
    p = task.generate(16, 1.0, gen())
    x = p.x.numpy().reshape(16, 2, 5, 5)
    expected = (x[:, 0].astype(np.float64) + x[:, 1]).reshape(16, -1)
    np.testing.assert_allclose(p.target.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert task.dims() == {"x_dim": 50, "y_dim": 25}


def test_addition_entries_within_scale_per_instance() -> None:
    task = Addition(size=6, test_size=8)
    s = torch.tensor([0.5, 1.0, 2.5, 4.0])
    p = task.generate(4, s, gen())
    x = p.x.numpy().reshape(4, -1)
    for i, si in enumerate(s.tolist()):
        assert np.abs(x[i]).max() <= si
        assert np.abs(x[i]).max() > 0.9 * si  # 72 draws of U(-s, s) reach near the bound
        assert abs(x[i].mean()) < 0.25 * si
    np.testing.assert_array_equal(p.difficulty.numpy(), s.numpy())


def test_addition_harder_split_is_wider() -> None:
    task = Addition(size=4, test_size=32)
    assert float(task.split("test").x.abs().max()) <= 1.0
    assert float(task.split("harder").x.abs().max()) > 1.0
    assert float(task.split("harder").x.abs().max()) <= 2.5


# -- inverse --------------------------------------------------------------------------------------


def test_inverse_target_is_numpy_and_scipy_inverse() -> None:
    task = Inverse(size=6, test_size=8)
    p = task.generate(12, 0.5, gen())
    a = p.x.numpy().reshape(12, 6, 6).astype(np.float64)
    target = p.target.numpy().reshape(12, 6, 6)
    np.testing.assert_allclose(target, np.linalg.inv(a), rtol=1e-4, atol=1e-5)
    for i in range(3):
        np.testing.assert_allclose(target[i], scipy.linalg.inv(a[i]), rtol=1e-4, atol=1e-5)


def test_inverse_difficulty_is_condition_number() -> None:
    task = Inverse(size=6, test_size=8)
    p = task.generate(12, torch.tensor([0.5, 0.1, 1.0] * 4), gen())
    a = p.x.numpy().reshape(12, 6, 6).astype(np.float64)
    np.testing.assert_allclose(p.difficulty.numpy(), np.linalg.cond(a), rtol=1e-4)
    np.testing.assert_allclose(p.info["shift"].numpy(), [0.5, 0.1, 1.0] * 4, rtol=1e-6)


@pytest.mark.parametrize("c", [0.5, 0.1])
def test_inverse_input_is_spd_with_min_eigenvalue_c(c: float) -> None:
    task = Inverse(size=8, test_size=8)
    p = task.generate(16, c, gen())
    a = p.x.numpy().reshape(16, 8, 8).astype(np.float64)
    np.testing.assert_allclose(a, a.transpose(0, 2, 1), atol=1e-5)
    eig = np.linalg.eigvalsh(a)
    assert eig.min() >= c - 1e-4
    assert eig.min() < c + 0.5  # 2 R R^T is near singular for some instance; c is the floor
    # A = 2 R R^T + c I: A - c I is positive semidefinite of the same scale as R ~ U(-1, 1)
    assert np.linalg.eigvalsh(a - c * np.eye(8)).min() >= -1e-4


def test_inverse_harder_split_is_worse_conditioned() -> None:
    task = Inverse(size=6, test_size=64)
    test, harder = task.split("test"), task.split("harder")
    assert float(harder.difficulty.median()) > 2 * float(test.difficulty.median())
    a = harder.x.numpy().reshape(64, 6, 6).astype(np.float64)
    np.testing.assert_allclose(harder.difficulty.numpy(), np.linalg.cond(a), rtol=1e-4)


def test_inverse_rejects_non_positive_shift() -> None:
    with pytest.raises(ValueError, match="> 0"):
        Inverse(size=3).generate(2, torch.tensor([0.5, 0.0]), gen())


# -- low rank -------------------------------------------------------------------------------------


def test_lowrank_observed_entries_and_mask() -> None:
    task = LowRank(size=10, test_size=8)
    p = task.generate(32, 20.0, gen())
    x, target, mask = (t.numpy() for t in (p.x, p.target, p.info["mask"]))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x[mask == 1], target[mask == 1])
    np.testing.assert_array_equal(x[mask == 0], 0.0)
    assert 0.4 < mask.mean() < 0.6  # keep = 0.5 over 3200 entries
    np.testing.assert_allclose(p.difficulty.numpy(), 1 / 20.0)


def test_lowrank_keep_fraction() -> None:
    p = LowRank(size=10, keep=0.2, test_size=8).generate(32, 20.0, gen())
    assert 0.15 < float(p.info["mask"].mean()) < 0.25
    with pytest.raises(ValueError, match="keep"):
        LowRank(size=4, keep=0.0)


def test_lowrank_structure_is_rank_half_plus_noise() -> None:
    """Two draws from one stream at divisors d1, d2 differ by U V^T (1/d1 - 1/d2): rank size/2.

    What is left once U V^T / d is removed is the noise, 0.1 N(0, 1), whatever d.
    """
    size, n = 10, 8
    task = LowRank(size=size, test_size=8)
    p1 = task.generate(n, 1.0, gen(3))
    p2 = task.generate(n, 2.0, gen(3))
    t1 = p1.target.numpy().reshape(n, size, size).astype(np.float64)
    t2 = p2.target.numpy().reshape(n, size, size).astype(np.float64)
    uv = 2 * (t1 - t2)  # U V^T
    assert list(np.linalg.matrix_rank(uv, tol=1e-3)) == [size // 2] * n
    noise = t1 - uv
    assert 0.08 < noise.std() < 0.12
    assert abs(noise.mean()) < 0.03
    # U, V ~ N(0, 1) of size x size/2: each entry of U V^T has variance size/2
    assert 0.7 * (size / 2) ** 0.5 < uv.std() < 1.3 * (size / 2) ** 0.5
    np.testing.assert_array_equal(p1.info["mask"].numpy(), p2.info["mask"].numpy())


def test_lowrank_small_divisor_is_dominated_by_rank_half() -> None:
    size = 12
    p = LowRank(size=size, test_size=8).generate(6, 1e-3, gen())
    sv = np.linalg.svd(p.target.numpy().reshape(6, size, size).astype(np.float64), compute_uv=False)
    k = size // 2
    assert (sv[:, k - 1] > 1e3 * sv[:, k]).all()
    assert (sv[:, k:] < 2.0).all()  # only noise of std 0.1 is left beyond rank k


def test_lowrank_harder_split_has_larger_signal() -> None:
    task = LowRank(size=8, test_size=32)
    test, harder = task.split("test"), task.split("harder")
    assert float(harder.target.std()) > 2 * float(test.target.std())
    np.testing.assert_allclose(harder.difficulty.numpy(), 1 / 5.0)


def test_lowrank_check_judges_observed_entries() -> None:
    task = LowRank(size=6, test_size=8)
    p = task.generate(8, 20.0, gen())
    mask = p.info["mask"]
    assert task.check(p, p.target).all()
    assert task.check(p, p.target + 0.5 * (1 - mask)).all()  # unobserved entries are free
    assert not task.check(p, p.target + 0.5 * mask).any()


def test_train_range_draws_each_instance_log_uniformly_and_keeps_the_splits() -> None:
    task = Inverse(size=4, train_range=[0.05, 1.0], test_size=8, val_size=8)
    p = task.sample(4000, torch.Generator().manual_seed(0))
    c = p.info["shift"]
    assert float(c.min()) >= 0.05 and float(c.max()) <= 1.0
    # log-uniform: the log of the shift is uniform, so its median sits at the geometric mean
    assert float(c.median()) == pytest.approx((0.05 * 1.0) ** 0.5, rel=0.1)
    assert float(torch.log(c).std()) == pytest.approx(math.log(20) / math.sqrt(12), rel=0.05)
    ref = Inverse(size=4, test_size=8, val_size=8)
    torch.testing.assert_close(task.split("test").x, ref.split("test").x)


def test_train_range_must_be_an_ordered_positive_pair() -> None:
    for bad in ([0.0, 1.0], [1.0, 0.5], [0.1]):
        with pytest.raises(ValueError, match=r"Inverse: train_range must be \[lo, hi\] with 0 < lo <= hi"):
            Inverse(size=4, train_range=bad)


def test_lowrank_clamping_keeps_observed_entries_through_training_and_replay() -> None:
    """With clamp_observed the observed entries are the answer's fixed entries: every iterate and
    every replayed instance keeps them, and the same instances are drawn as without clamping."""
    plain, clamped = (
        LowRank(size=6, test_size=8, val_size=8),
        LowRank(size=6, clamp_observed=True, test_size=8, val_size=8),
    )
    p, q = plain.split("test"), clamped.split("test")
    assert p.constraint is None and torch.equal(p.x, q.x) and torch.equal(p.target, q.target)
    observed = q.info["mask"].bool()
    assert torch.equal(q.constraint.mask, observed) and torch.equal(q.constraint.values[observed], q.x[observed])
    assert clamped.check(q, q.constraint.apply(torch.zeros_like(q.target))).all()  # observed entries alone pass check

    model = EnergyModel(
        MLPEnergy(**clamped.dims(), width=16),
        GradientDescent(step_size=1.0, max_steps=3),
        IREMObjective(),
        replay_capacity=64,
    )
    g = torch.Generator().manual_seed(0)
    model.training_loss(clamped, clamped.sample(16, g), g)
    mixed, y0 = model._with_replay(clamped, clamped.sample(16, g), g)
    assert mixed.constraint is not None and mixed.constraint.mask.shape == mixed.target.shape
    stored = model.replay.sample(16, g)
    assert torch.equal(stored["y"][stored["fixed_mask"]], stored["fixed_values"][stored["fixed_mask"]])
    answer = model.predict(clamped, q, [3], g).answers["3"]
    assert torch.equal(answer[observed], q.x[observed])
