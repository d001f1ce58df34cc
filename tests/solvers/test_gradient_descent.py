"""solvers/gradient_descent.py on energies whose minimiser and descent path are known.

The shared tests run for every config in configs/solver/ (with the step size set for the toy
energy); the rest pin one behaviour each: monotone descent, accept-if-lower, the lowest-energy
pick, NaN isolation, grad_tol, grad_clip, Langevin noise, truncated and full backprop, the
learnable step, and per-instance bookkeeping for segmented answers.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction
from irem.problem import Status, per_instance_sum
from irem.solver import Solver
from irem.solvers.gradient_descent import GradientDescent

DT = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Quadratic(EnergyFunction):
    """E_i = 0.5 * sum_j w_ij (y_ij - b_ij - theta_j)^2 with x = stack([b, w], 1).

    The minimiser is b + theta; theta (zero) is a parameter so gradients can reach the energy.
    """

    def __init__(self, dim: int, dtype: torch.dtype = DT) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim, dtype=dtype))

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        b, w = x[:, 0], x[:, 1]
        return 0.5 * (w * (y - b - self.theta) ** 2).sum(dim=1)


class NaNForFirst(Quadratic):
    """The quadratic, but instance 0's energy and gradient are NaN from step `bad_from` on."""

    def __init__(self, dim: int, bad_from: int = 2) -> None:
        super().__init__(dim)
        self.bad_from = bad_from

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        e = super().energy(x, y, step)
        bad = (torch.arange(y.shape[0]) == 0) & (step >= self.bad_from)
        safe = torch.where(bad, y[:, 0] - 1e3, torch.ones_like(y[:, 0]))  # sqrt of a negative: NaN
        return e + torch.where(bad, torch.sqrt(safe), torch.zeros_like(e))


class SegmentQuadratic(EnergyFunction):
    """Rows of y belong to instances through x['segment']; the energy sums an instance's rows."""

    def energy(self, x: dict, y: Tensor, step: int = 0) -> Tensor:
        rows = 0.5 * x["w"] * (y - x["b"]) ** 2
        return per_instance_sum(rows, x["segment"], x["n"])


def quadratic_problem(n: int = 4, dim: int = 3, seed: int = 0, w_range=(0.5, 2.0)) -> tuple[Tensor, Tensor]:
    g = gen(seed)
    b = torch.randn(n, dim, generator=g, dtype=DT)
    lo, hi = w_range
    w = lo + (hi - lo) * torch.rand(n, dim, generator=g, dtype=DT)
    y0 = torch.rand(n, dim, generator=g, dtype=DT) * 2 - 1
    return torch.stack([b, w], 1), y0


def task_starts(like: Tensor, seed: int):
    """A task's start sampler (U(-1, 1), as Task.init_answer draws), for solvers that restart."""
    g = gen(seed)
    return lambda index: torch.rand(index.numel(), *like.shape[1:], generator=g, dtype=like.dtype) * 2 - 1


def quadratic_verifier(x: Tensor):
    """A task's check for the quadratic problems: the answer is the minimiser b (theta is zero)."""
    return lambda index, y: ((y - x[index, 0]).abs() < 1e-3).all(dim=1)


def energy_of(energy: EnergyFunction, x, y: Tensor) -> Tensor:
    with torch.no_grad():
        return energy.energy(x, y)


@pytest.fixture
def make_solver(solver_name: str, compose_config):
    cfg = compose_config("train", (f"solver={solver_name}",)).solver
    if "landscapes" in cfg:  # annealed: descends a family of landscapes, tests/solvers/test_annealed.py
        pytest.skip("a landscape solver needs a landscape-conditioned energy; tested in tests/solvers/test_annealed.py")
    wrapper = "descent" in cfg and cfg.descent is None  # adaptive, best_of_n: wrap a trained model's solver

    def make(**overrides) -> Solver:
        if wrapper:  # the overrides go to a plain descent inside the wrapper
            descent = instantiate(compose_config("train", ("solver=gd",)).solver, **overrides)
            solver = instantiate(cfg, _partial_=True)(descent=descent, max_steps=descent.max_steps)
        else:
            solver = instantiate(cfg, **overrides)
        assert isinstance(solver, Solver)
        if any(t.categorical for t in getattr(solver, "chain", ())):
            pytest.skip(
                "a chain for categorical answers (classes along the last dimension); tested in test_transforms.py"
            )
        return solver

    return make


# -- shared over every solver config -----------------------------------------------------------------


def test_config_descends_convex_quadratic(make_solver) -> None:
    solver = make_solver(step_size=0.5)
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    result = solver.solve(
        energy, x, y0, budget=60, generator=gen(1), init=task_starts(y0, 1), verify=quadratic_verifier(x)
    )
    assert result.y.shape == y0.shape and result.y.dtype == DT
    assert (result.status != int(Status.DIVERGED)).all()
    e0, e_end = energy_of(energy, x, y0), energy_of(energy, x, result.y)
    assert (e_end < e0).all()
    torch.testing.assert_close(result.y, x[:, 0], atol=0.05, rtol=0)
    torch.testing.assert_close(result.energy, e_end)


def test_config_snapshots_equal_separate_runs(make_solver) -> None:
    solver = make_solver(step_size=0.5)
    if not getattr(solver, "snapshots_match_budgets", True):
        pytest.skip(f"{type(solver).__name__}: a snapshot is a point on the longer solve, not a shorter solve")
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    budgets = [0, 1, 3, 7]
    full = solver.solve(
        energy,
        x,
        y0,
        budget=7,
        snapshots=budgets,
        generator=gen(2),
        init=task_starts(y0, 2),
        verify=quadratic_verifier(x),
    )
    assert sorted(full.snapshots) == budgets
    for b in budgets:
        alone = solver.solve(
            energy, x, y0, budget=b, generator=gen(2), init=task_starts(y0, 2), verify=quadratic_verifier(x)
        )
        assert torch.equal(full.snapshots[b], alone.y), f"snapshot {b}"
    assert torch.equal(full.snapshots[7], full.y)


def test_config_best_pairs_energy_with_its_iterate(make_solver) -> None:
    """Coordinate 0 settles at once, coordinate 1 slowly blows up: the best step is early."""
    solver = make_solver(step_size=1.05)
    n = 3
    b = torch.zeros(n, 2, dtype=DT)
    w = torch.tensor([[1.0, 2.0]] * n, dtype=DT)
    y0 = torch.tensor([[1.0, 0.01], [2.0, 0.02], [-1.0, 0.005]], dtype=DT)
    x = torch.stack([b, w], 1)
    energy = Quadratic(2)
    r = solver.solve(
        energy,
        x,
        y0,
        budget=30,
        record_history=True,
        generator=gen(3),
        init=task_starts(y0, 3),
        verify=quadratic_verifier(x),
    )
    hist = r.energy_history
    assert hist.shape == (31, n)
    idx = torch.arange(n)
    torch.testing.assert_close(hist[r.best_step, idx], r.best_energy, rtol=0, atol=0)
    torch.testing.assert_close(energy_of(energy, x, r.best_y), r.best_energy, rtol=1e-12, atol=1e-12)
    # NaN marks steps after an instance stopped (adaptive solvers); the best is over the steps it took
    torch.testing.assert_close(r.best_energy, hist.nan_to_num(nan=math.inf).min(0).values, rtol=0, atol=0)
    assert (r.best_step <= r.steps).all()


def test_config_differentiable_solve_trains_the_energy(make_solver) -> None:
    solver = make_solver(step_size=0.5, max_steps=4)
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    r = solver.solve(
        energy, x, y0, differentiable=True, generator=gen(4), init=task_starts(y0, 4), verify=quadratic_verifier(x)
    )
    assert r.y.requires_grad
    (r.y**2).sum().backward()
    assert energy.theta.grad is not None and torch.isfinite(energy.theta.grad).all()
    assert energy.theta.grad.abs().sum() > 0


# -- plain descent ------------------------------------------------------------------------------------


def test_energy_decreases_monotonically_and_converges() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    r = GradientDescent(step_size=0.5, max_steps=60).solve(energy, x, y0, record_history=True)
    diffs = r.energy_history.diff(dim=0)
    assert (diffs <= 0).all()
    assert (diffs[:10] < 0).all()
    torch.testing.assert_close(r.y, x[:, 0], atol=1e-6, rtol=0)
    assert (r.status == int(Status.MAX_STEPS)).all() and (r.steps == 60).all()
    torch.testing.assert_close(r.energy_history[0], energy_of(energy, x, y0))


def test_step_matches_formula() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    r = GradientDescent(step_size=0.25, max_steps=2).solve(energy, x, y0, record_trajectory=True)
    b, w = x[:, 0], x[:, 1]
    y1 = y0 - 0.25 * w * (y0 - b)
    torch.testing.assert_close(r.trajectory[1], y1)
    torch.testing.assert_close(r.y, y1 - 0.25 * w * (y1 - b))
    torch.testing.assert_close(r.step_size, torch.full((4,), 0.25, dtype=DT))


def test_momentum_step_matches_the_heavy_ball_formula() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    r = GradientDescent(step_size=0.25, max_steps=3, momentum=0.5).solve(energy, x, y0, record_trajectory=True)
    b, w = x[:, 0], x[:, 1]
    ys = [y0, y0 - 0.25 * w * (y0 - b)]  # the first step has no velocity yet
    for _ in range(2):
        ys.append(ys[-1] - 0.25 * w * (ys[-1] - b) + 0.5 * (ys[-1] - ys[-2]))
    for t in range(4):
        torch.testing.assert_close(r.trajectory[t], ys[t])


def steps_on_ill_conditioned_quadratic(solver: GradientDescent) -> int:
    """Steps until `solver` is within 1e-6 of the start's distance to the minimiser of one
    20-dimensional quadratic with curvatures 0.04..1 (it must get there within its budget)."""
    dim = 20
    b = torch.randn(1, dim, generator=gen(4), dtype=DT)
    w = torch.logspace(math.log10(0.04), 0, dim, dtype=DT).unsqueeze(0)
    x, y0 = torch.stack([b, w], 1), torch.zeros(1, dim, dtype=DT)
    r = solver.solve(Quadratic(dim), x, y0, record_trajectory=True)
    err = torch.stack([(y - b).norm() for y in r.trajectory])
    assert err[-1] < 1e-6 * err[0]  # converged within the budget
    return int((err < 1e-6 * err[0]).float().argmax())


def test_momentum_converges_in_fewer_steps_on_an_ill_conditioned_quadratic() -> None:
    """Curvatures 0.04..1 with step 1: plain descent needs ~ln(1e6)/0.04 steps, heavy ball with
    Polyak's momentum ((1 - 0.2) / (1 + 0.2))^2 and step 4 / (1 + 0.2)^2 about eight times fewer."""
    beta, step = ((1 - 0.2) / (1 + 0.2)) ** 2, 4 / (1 + 0.2) ** 2

    plain = steps_on_ill_conditioned_quadratic(GradientDescent(step_size=1.0, max_steps=600))
    heavy = steps_on_ill_conditioned_quadratic(GradientDescent(step_size=step, max_steps=600, momentum=beta))
    assert 0 < heavy < plain / 5, (heavy, plain)


def test_momentum_restarts_after_a_rejected_step() -> None:
    """With accept-if-lower, a rejected proposal zeroes the velocity: the next proposal is a plain
    (shrunk) gradient step from the kept iterate, and the energy never rises."""
    x, y0 = quadratic_problem(w_range=(1.5, 2.0))
    energy = Quadratic(3)
    r = GradientDescent(step_size=0.6, max_steps=30, momentum=0.9, accept_if_lower=True).solve(
        energy, x, y0, record_history=True, record_trajectory=True
    )
    hist, b, w = r.energy_history, x[:, 0], x[:, 1]
    assert (hist.diff(dim=0) <= 0).all()
    rejected = hist.diff(dim=0) == 0  # [step, instance]: proposal t + 1 was rejected
    assert rejected.any(dim=0).all()  # momentum 0.9 overshoots on every instance at some step
    for i in range(x.shape[0]):
        t = int(rejected[:, i].float().argmax())  # the first rejection, at step t + 1
        y = r.trajectory[t + 1][i]
        assert torch.equal(y, r.trajectory[t][i])
        if not rejected[t + 1, i]:  # the next step is accepted: a plain step at half the step size
            torch.testing.assert_close(r.trajectory[t + 2][i], y - 0.3 * w[i] * (y - b[i]))
    torch.testing.assert_close(r.y, b, atol=1e-4, rtol=0)


def test_restart_tames_a_momentum_too_large_for_the_landscape() -> None:
    """Curvatures 0.04..1 with step 1 and momentum 0.95: heavy ball rings and needs more steps than
    plain descent (about 520 against 305); restarting on every uphill step stops the ringing and
    beats plain descent (about 200)."""
    plain = steps_on_ill_conditioned_quadratic(GradientDescent(step_size=1.0, max_steps=600))
    ringing = steps_on_ill_conditioned_quadratic(GradientDescent(step_size=1.0, max_steps=600, momentum=0.95))
    restarted = steps_on_ill_conditioned_quadratic(
        GradientDescent(step_size=1.0, max_steps=600, momentum=0.95, restart=True)
    )
    assert plain < ringing and restarted < ringing / 2 and restarted < 0.8 * plain, (restarted, ringing, plain)


def test_best_step_is_not_off_by_one() -> None:
    solver = GradientDescent(step_size=1.05, max_steps=30)
    x = torch.stack([torch.zeros(2, 2, dtype=DT), torch.tensor([[1.0, 2.0]] * 2, dtype=DT)], 1)
    y0 = torch.tensor([[1.0, 0.01], [3.0, 0.001]], dtype=DT)
    energy = Quadratic(2)
    r = solver.solve(energy, x, y0, record_history=True, record_trajectory=True)
    assert ((r.best_step > 0) & (r.best_step < 30)).all()
    for i in range(2):
        t = int(r.best_step[i])
        assert torch.equal(r.best_y[i], r.trajectory[t][i])
        assert r.energy_history[t, i] < r.energy_history[t + 1, i]
        assert r.energy_history[t, i] < r.energy_history[t - 1, i]


def test_large_step_diverges_but_accept_if_lower_never_increases() -> None:
    x, y0 = quadratic_problem(w_range=(1.5, 2.0))
    energy = Quadratic(3)
    step = 1.5  # above 2 / max(w)
    plain = GradientDescent(step_size=step, max_steps=20).solve(energy, x, y0, record_history=True)
    assert (plain.energy_history[-1] > 10 * plain.energy_history[0]).all()
    assert (plain.energy_history.diff(dim=0) > 0).any()
    accept = GradientDescent(step_size=step, max_steps=20, accept_if_lower=True).solve(
        energy, x, y0, record_history=True
    )
    assert (accept.energy_history.diff(dim=0) <= 0).all()
    assert (accept.energy_history[-1] < 0.5 * accept.energy_history[0]).all()
    torch.testing.assert_close(accept.energy, energy_of(energy, x, accept.y))
    assert (accept.step_size < step).all()  # rejected steps shrank each instance's step


# -- non-finite energies ---------------------------------------------------------------------------------


def test_nan_instance_diverges_and_never_poisons_the_batch() -> None:
    x, y0 = quadratic_problem(n=4)
    solver = GradientDescent(step_size=0.5, max_steps=8)
    bad = solver.solve(NaNForFirst(3, bad_from=2), x, y0, record_history=True, record_trajectory=True)
    clean_all = solver.solve(Quadratic(3), x, y0, record_trajectory=True)
    rest = solver.solve(Quadratic(3), x[1:], y0[1:], record_history=True)

    assert int(bad.status[0]) == int(Status.DIVERGED)
    assert torch.isfinite(bad.y).all()
    # the proposal of step 2 is where the NaN appears: y[0] stays at the iterate after step 1
    assert torch.equal(bad.y[0], clean_all.trajectory[1][0])
    assert math.isnan(float(bad.energy[0]))
    assert torch.isfinite(bad.best_energy[0]) and torch.isfinite(bad.best_y[0]).all()
    for name in ("y", "steps", "status", "energy", "best_y", "best_energy", "best_step"):
        assert torch.equal(getattr(bad, name)[1:], getattr(rest, name)), name
    assert torch.equal(bad.energy_history[:, 1:], rest.energy_history)
    assert bad.summary()["diverged"] == 0.25


def test_nan_at_the_start_is_diverged_with_zero_steps() -> None:
    x, y0 = quadratic_problem(n=3)
    r = GradientDescent(step_size=0.5, max_steps=5).solve(NaNForFirst(3, bad_from=0), x, y0)
    assert r.status.tolist() == [int(Status.DIVERGED), int(Status.MAX_STEPS), int(Status.MAX_STEPS)]
    assert r.steps.tolist() == [0, 5, 5]
    assert torch.equal(r.y[0], y0[0])


def test_nan_with_accept_if_lower_is_rejected_and_others_unchanged() -> None:
    x, y0 = quadratic_problem(n=3)
    solver = GradientDescent(step_size=0.5, max_steps=6, accept_if_lower=True)
    bad = solver.solve(NaNForFirst(3, bad_from=2), x, y0)
    rest = solver.solve(Quadratic(3), x[1:], y0[1:])
    assert torch.isfinite(bad.y).all()
    assert torch.equal(bad.y[1:], rest.y)
    assert torch.equal(bad.status[1:], rest.status)


# -- stopping, clipping, noise ------------------------------------------------------------------------


def test_grad_tol_marks_converged_and_stops_counting() -> None:
    x, y0 = quadratic_problem(n=4, w_range=(0.3, 1.8))
    energy = Quadratic(3)
    tol, T = 1e-3, 100
    free = GradientDescent(step_size=0.5, max_steps=T).solve(energy, x, y0, record_trajectory=True)
    gnorm = torch.stack([(x[:, 1] * (y - x[:, 0])).norm(dim=1) for y in free.trajectory])  # [T+1, N]
    first_below = (gnorm < tol).long().argmax(0)
    assert ((first_below > 0) & (first_below < T)).all()
    assert len(set(first_below.tolist())) > 1  # instances stop at different steps

    r = GradientDescent(step_size=0.5, max_steps=T, grad_tol=tol).solve(energy, x, y0)
    assert (r.status == int(Status.CONVERGED)).all()
    assert torch.equal(r.steps, first_below)
    for i in range(4):
        assert torch.equal(r.y[i], free.trajectory[int(first_below[i])][i])


def test_grad_tol_not_reached_is_max_steps() -> None:
    x, y0 = quadratic_problem(n=2)
    r = GradientDescent(step_size=0.5, max_steps=3, grad_tol=1e-12).solve(Quadratic(3), x, y0)
    assert (r.status == int(Status.MAX_STEPS)).all() and (r.steps == 3).all()


def test_grad_clip_bounds_update_norm() -> None:
    x, y0 = quadratic_problem(n=4)
    x[:, 0] += 50.0  # far away: raw gradients are large
    energy = Quadratic(3)
    clipped = GradientDescent(step_size=0.5, max_steps=10, grad_clip=1.0).solve(energy, x, y0, record_trajectory=True)
    steps = torch.stack([(b - a).norm(dim=1) for a, b in pairwise(clipped.trajectory)])
    assert (steps <= 0.5 * 1.0 + 1e-9).all()
    torch.testing.assert_close(steps, torch.full_like(steps, 0.5))  # gradients stay above the clip
    free = GradientDescent(step_size=0.5, max_steps=10).solve(energy, x, y0, record_trajectory=True)
    assert ((free.trajectory[1] - y0).norm(dim=1) > 5).all()


def test_grad_clip_leaves_small_gradients_alone() -> None:
    x, y0 = quadratic_problem(n=3)
    energy = Quadratic(3)
    a = GradientDescent(step_size=0.5, max_steps=5, grad_clip=1e6).solve(energy, x, y0)
    b = GradientDescent(step_size=0.5, max_steps=5).solve(energy, x, y0)
    torch.testing.assert_close(a.y, b.y)


def test_langevin_noise_is_seeded() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    solver = GradientDescent(step_size=0.5, max_steps=10, noise=0.1)
    a = solver.solve(energy, x, y0, generator=gen(1))
    b = solver.solve(energy, x, y0, generator=gen(1))
    c = solver.solve(energy, x, y0, generator=gen(2))
    assert torch.equal(a.y, b.y)
    assert not torch.allclose(a.y, c.y)
    quiet = GradientDescent(step_size=0.5, max_steps=10)
    assert torch.equal(quiet.solve(energy, x, y0, generator=gen(1)).y, quiet.solve(energy, x, y0, generator=gen(2)).y)


def test_langevin_noise_scale_on_a_flat_energy() -> None:
    n, dim, T, sigma = 200, 10, 16, 0.1
    x = torch.zeros(n, 2, dim, dtype=DT)  # w = 0: the energy is flat, only noise moves y
    y0 = torch.zeros(n, dim, dtype=DT)
    r = GradientDescent(step_size=0.5, max_steps=T, noise=sigma).solve(Quadratic(dim), x, y0, generator=gen(0))
    std = float(r.y.std())
    assert abs(std - sigma * T**0.5) < 0.05 * sigma * T**0.5
    assert abs(float(r.y.mean())) < 0.02


# -- backprop through descent -------------------------------------------------------------------------


def _loss_grad(solver: GradientDescent, energy: EnergyFunction, x, y0, weights) -> list[Tensor]:
    energy.zero_grad()
    solver.zero_grad()
    r = solver.solve(energy, x, y0, differentiable=True)
    (r.y * weights).sum().backward()
    # a parameter the gradient in y does not depend on (the output bias) gets no gradient: zero
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in energy.parameters()]


def test_truncated_and_full_gradients_on_quadratic() -> None:
    """y_T = m + (1 - s w)^T (y0 - m) with m = b + theta: full d y_T / d theta = 1 - (1 - s w)^T;
    with only the last step kept, y_{T-1} is a constant and d y_T / d theta = s w."""
    x, y0 = quadratic_problem(n=4)
    w, s, T = x[:, 1], 0.25, 5
    energy = Quadratic(3)
    ones = torch.ones_like(y0)
    (g_trunc,) = _loss_grad(GradientDescent(step_size=s, max_steps=T, truncate=1), energy, x, y0, ones)
    (g_full,) = _loss_grad(GradientDescent(step_size=s, max_steps=T, truncate=0), energy, x, y0, ones)
    torch.testing.assert_close(g_trunc, (s * w).sum(0))
    torch.testing.assert_close(g_full, (1 - (1 - s * w) ** T).sum(0))
    (g_two,) = _loss_grad(GradientDescent(step_size=s, max_steps=T, truncate=2), energy, x, y0, ones)
    torch.testing.assert_close(g_two, (1 - (1 - s * w) ** 2).sum(0))


def test_truncate_one_gives_energy_gradients_without_graph_before() -> None:
    x, y0 = quadratic_problem(n=4)
    energy = Quadratic(3)
    r = GradientDescent(step_size=0.5, max_steps=4, truncate=1).solve(energy, x, y0, differentiable=True)
    assert r.y.requires_grad
    r.y.sum().backward()
    assert energy.theta.grad is not None and energy.theta.grad.abs().sum() > 0
    plain = GradientDescent(step_size=0.5, max_steps=4).solve(energy, x, y0)
    assert not plain.y.requires_grad
    torch.testing.assert_close(plain.y, r.y.detach())


@pytest.fixture
def tiny_mlp() -> tuple[MLPEnergy, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    energy = MLPEnergy(x_dim=3, y_dim=2, width=5, depth=2).double()
    g = gen(4)
    x = torch.randn(3, 3, generator=g, dtype=DT)
    y0 = torch.rand(3, 2, generator=g, dtype=DT) * 2 - 1
    weights = torch.randn(3, 2, generator=g, dtype=DT)
    return energy, x, y0, weights


def test_full_unroll_matches_finite_differences(tiny_mlp) -> None:
    energy, x, y0, weights = tiny_mlp
    solver = GradientDescent(step_size=0.5, max_steps=4, truncate=0)
    grads = _loss_grad(solver, energy, x, y0, weights)
    trunc = _loss_grad(GradientDescent(step_size=0.5, max_steps=4, truncate=1), energy, x, y0, weights)
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-8) for a, b in zip(grads, trunc, strict=True))

    def loss() -> float:
        return float((solver.solve(energy, x, y0).y * weights).sum())

    eps = 1e-6
    g = gen(5)
    with torch.no_grad():
        for p, grad in zip(energy.parameters(), grads, strict=True):
            flat, gflat = p.view(-1), grad.view(-1)
            for i in torch.randperm(flat.numel(), generator=g)[:4].tolist():
                old = float(flat[i])
                flat[i] = old + eps
                up = loss()
                flat[i] = old - eps
                down = loss()
                flat[i] = old
                fd = (up - down) / (2 * eps)
                assert fd == pytest.approx(float(gflat[i]), rel=1e-5, abs=1e-8)


def test_full_unroll_equals_truncate_at_budget(tiny_mlp) -> None:
    energy, x, y0, weights = tiny_mlp
    full = _loss_grad(GradientDescent(step_size=0.5, max_steps=3, truncate=0), energy, x, y0, weights)
    all3 = _loss_grad(GradientDescent(step_size=0.5, max_steps=3, truncate=3), energy, x, y0, weights)
    for a, b in zip(full, all3, strict=True):
        torch.testing.assert_close(a, b)


def test_learnable_step_receives_gradient() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    solver = GradientDescent(step_size=0.25, max_steps=3, learnable_step=True)
    assert isinstance(solver.log_step_size, nn.Parameter)
    assert [n for n, _ in solver.named_parameters()] == ["log_step_size"]
    r = solver.solve(energy, x, y0, differentiable=True)
    (r.y**2).sum().backward()
    assert solver.log_step_size.grad is not None
    assert torch.isfinite(solver.log_step_size.grad) and solver.log_step_size.grad != 0
    fixed = GradientDescent(step_size=0.25)
    assert list(fixed.parameters()) == [] and "log_step_size" in dict(fixed.named_buffers())
    assert float(solver.step_size.detach()) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"truncate": -1}, "truncate"),
        ({"max_steps": -1}, "max_steps"),
        ({"shrink": 0.0}, "shrink"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
    ],
)
def test_invalid_arguments_raise(kwargs, word) -> None:
    with pytest.raises(ValueError, match=word):
        GradientDescent(**kwargs)


def test_invalid_budget_and_snapshots_raise() -> None:
    x, y0 = quadratic_problem()
    solver = GradientDescent(step_size=0.5, max_steps=3)
    with pytest.raises(ValueError, match="budget"):
        solver.solve(Quadratic(3), x, y0, budget=-1)
    with pytest.raises(ValueError, match="snapshots"):
        solver.solve(Quadratic(3), x, y0, budget=3, snapshots=[5])


def test_energy_of_wrong_shape_is_reported() -> None:
    class PerEntry(Quadratic):
        def energy(self, x, y, step=0):
            return 0.5 * x[:, 1] * (y - x[:, 0]) ** 2

    x, y0 = quadratic_problem()
    with pytest.raises(ValueError, match="one per instance"):
        GradientDescent(step_size=0.5).solve(PerEntry(3), x, y0)


# -- segmented answers ----------------------------------------------------------------------------------


def segment_problem() -> tuple[dict, Tensor]:
    """Three instances of 2, 3 and 1 rows; each instance has its own curvature."""
    segment = torch.tensor([0, 0, 1, 1, 1, 2])
    g = gen(7)
    b = torch.randn(6, 2, generator=g, dtype=DT)
    w = torch.tensor([0.4, 1.6, 1.0], dtype=DT)[segment].unsqueeze(1).expand(6, 2).clone()
    y0 = torch.rand(6, 2, generator=g, dtype=DT) * 2 - 1
    return {"b": b, "w": w, "segment": segment, "n": 3}, y0


def one_instance(x: dict, y0: Tensor, i: int) -> tuple[dict, Tensor]:
    rows = x["segment"] == i
    return {
        "b": x["b"][rows],
        "w": x["w"][rows],
        "segment": torch.zeros(int(rows.sum()), dtype=torch.long),
        "n": 1,
    }, y0[rows]


def test_segments_get_per_instance_steps_and_status() -> None:
    x, y0 = segment_problem()
    solver = GradientDescent(step_size=0.5, max_steps=200, grad_tol=1e-4)
    r = solver.solve(SegmentQuadratic(), x, y0, segment=x["segment"], record_history=True)
    assert r.steps.shape == r.status.shape == r.best_step.shape == (3,)
    assert r.energy.shape == r.best_energy.shape == (3,) and r.y.shape == y0.shape
    assert (r.status == int(Status.CONVERGED)).all()
    assert len(set(r.steps.tolist())) == 3  # the flat instance needs the most steps
    assert int(r.steps.argmax()) == 0
    for i in range(3):
        xi, yi = one_instance(x, y0, i)
        alone = solver.solve(SegmentQuadratic(), xi, yi, segment=xi["segment"])
        assert int(r.steps[i]) == int(alone.steps[0])
        torch.testing.assert_close(r.y[x["segment"] == i], alone.y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.y, x["b"], atol=1e-3, rtol=0)


def test_segments_nan_freezes_only_that_instance() -> None:
    class BadSecond(SegmentQuadratic):
        def energy(self, x, y, step=0):
            e = super().energy(x, y, step)
            bad = (torch.arange(x["n"]) == 1) & (step >= 1)
            return torch.where(bad, torch.full_like(e, math.nan), e)

    x, y0 = segment_problem()
    solver = GradientDescent(step_size=0.5, max_steps=5)
    r = solver.solve(BadSecond(), x, y0, segment=x["segment"])
    clean = solver.solve(SegmentQuadratic(), x, y0, segment=x["segment"])
    assert r.status.tolist() == [int(Status.MAX_STEPS), int(Status.DIVERGED), int(Status.MAX_STEPS)]
    rows = x["segment"] == 1
    assert torch.equal(r.y[rows], y0[rows])
    assert torch.equal(r.y[~rows], clean.y[~rows])


def test_segments_grad_clip_is_per_instance() -> None:
    x, y0 = segment_problem()
    x["b"] = x["b"] + 40.0
    r = GradientDescent(step_size=0.5, max_steps=3, grad_clip=1.0).solve(
        SegmentQuadratic(), x, y0, segment=x["segment"], record_trajectory=True
    )
    for a, b in pairwise(r.trajectory):
        per_instance = per_instance_sum((b - a) ** 2, x["segment"], 3).sqrt()
        torch.testing.assert_close(per_instance, torch.full((3,), 0.5, dtype=DT))


# -- EBT's System 2 training recipe ---------------------------------------------------------------------
def test_detach_steps_differentiates_each_step_through_its_own_gradient_only() -> None:
    """With the start of every step detached, y_t = y_{t-1} - s w (y_{t-1} - b - theta) gives
    d y_t / d theta = s w at every step, however many steps are unrolled."""
    x, y0 = quadratic_problem(n=4)
    w, s, T = x[:, 1], 0.25, 5
    energy = Quadratic(3)
    ones = torch.ones_like(y0)
    solver = GradientDescent(step_size=s, max_steps=T, truncate=0, detach_steps=True)
    (g_detached,) = _loss_grad(solver, energy, x, y0, ones)
    torch.testing.assert_close(g_detached, (s * w).sum(0))
    r = solver.solve(energy, x, y0, differentiable=True, record_trajectory=True)
    assert all(y.requires_grad for y in r.trajectory[1:])  # every step can carry a loss
    torch.testing.assert_close(r.y.detach(), GradientDescent(step_size=s, max_steps=T).solve(energy, x, y0).y)


def test_random_step_size_draws_per_instance_factors_in_training_only() -> None:
    x, y0 = quadratic_problem(n=64)
    solver = GradientDescent(step_size=0.25, max_steps=2, random_step_size=True)
    train = solver.solve(Quadratic(3), x, y0, differentiable=True, generator=gen(1))
    factor = train.step_size / 0.25
    assert float(factor.min()) >= 0.5 and float(factor.max()) <= 2.0
    assert float(factor.std()) > 0.2  # drawn per instance, not one factor for the batch
    again = solver.solve(Quadratic(3), x, y0, differentiable=True, generator=gen(1))
    torch.testing.assert_close(again.step_size, train.step_size)  # seeded
    infer = solver.solve(Quadratic(3), x, y0, generator=gen(1))
    torch.testing.assert_close(infer.step_size, torch.full((64,), 0.25, dtype=DT))


def test_random_steps_draws_the_training_budget_and_leaves_inference_alone() -> None:
    x, y0 = quadratic_problem(n=2)
    solver = GradientDescent(step_size=0.25, max_steps=2, random_steps=3)
    taken = {
        int(solver.solve(Quadratic(3), x, y0, differentiable=True, generator=gen(s)).steps.max()) for s in range(40)
    }
    assert taken == {2, 3, 4, 5}
    assert int(solver.solve(Quadratic(3), x, y0, generator=gen(0)).steps.max()) == 2
    assert int(solver.solve(Quadratic(3), x, y0, budget=7, differentiable=True, generator=gen(0)).steps.max()) == 7
    with pytest.raises(ValueError, match="random_steps must be an integer >= 0"):
        GradientDescent(random_steps=-1)
