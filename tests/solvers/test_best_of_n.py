"""solvers/best_of_n.py: several starts per instance, the lowest energy kept.

Checked on a tilted double well, where a start on the wrong side settles in the higher minimum,
against the wrapped GradientDescent (one start is that solver exactly), against the per-start
results the wrapped solver handed back (a recording wrapper sees the batched solve), on a
segmented graph batch whose picked rows must land in the original layout, and with restarts that
rescue an instance whose every start diverged.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_gradient_descent import DT, Quadratic, gen
from torch import Tensor

from irem.energies.gnn import GNNEnergy
from irem.energy import EnergyFunction
from irem.problem import SolveResult, Status
from irem.solver import Solver, SolveRequest
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.best_of_n import BestOfN
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import EnergyPlateau
from irem.tasks.graph import ShortestPath


class DoubleWell(EnergyFunction):
    """E_i = sum_j (y_ij^2 - 1)^2 + tilt_i * y_ij with x = tilt [n, 1]: two basins, near -1 and
    +1; a positive tilt makes the one near -1 the lower."""

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        return ((y**2 - 1) ** 2 + x * y).sum(dim=1)


class Bounded(Quadratic):
    """The quadratic on |y| < 10 only: outside it the energy is NaN, so a step too large for an
    instance's curvature ends in divergence rather than in ever larger finite numbers."""

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        return super().energy(x, y, step) + 0 * torch.sqrt(100 - y**2).sum(dim=1)


class Recording(Solver):
    """Runs `inner` and keeps what it was given and what it returned."""

    def __init__(self, inner: Solver) -> None:
        super().__init__()
        self.inner = inner
        self.max_steps = inner.max_steps
        self.calls: list[dict[str, Any]] = []

    def run(self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest) -> SolveResult:
        res = self.inner.run(energy, x, y0, budget, request)
        segment = request.segment
        self.calls.append({"x": x, "y0": y0, "segment": segment, "result": res})
        return res


def double_well(n: int = 16) -> tuple[Tensor, Tensor]:
    """Tilts in [0.5, 1.5], every start at +0.8: on the wrong side of the barrier (near y = tilt / 4)."""
    tilt = torch.linspace(0.5, 1.5, n, dtype=DT).unsqueeze(1)
    return tilt, torch.full((n, 1), 0.8, dtype=DT)


def energy_of(energy: EnergyFunction, x: Any, y: Tensor) -> Tensor:
    with torch.no_grad():
        return energy.energy(x, y)


def test_two_basins_best_of_n_finds_the_lower_minimum() -> None:
    x, y0 = double_well()
    energy = DoubleWell()
    gd = GradientDescent(step_size=0.05, max_steps=100)
    one = gd.solve(energy, x, y0)
    assert (one.y > 0.5).all()  # a single start stays in the higher basin
    out = BestOfN(gd, starts=8, init="uniform").solve(energy, x, y0, generator=gen(0))
    assert (out.y < -0.5).all()
    assert (out.energy < one.best_energy - 0.5).all()  # the lower minimum is lower by ~2 * tilt
    assert (out.start_index > 0).all()
    assert torch.equal(out.steps, torch.full_like(out.steps, 8 * 100))  # it cost eight descents


@pytest.mark.parametrize("pick", ["best", "final"])
def test_picked_energy_is_the_lowest_of_every_start(pick: str) -> None:
    x, y0 = double_well(12)
    energy = DoubleWell()
    rec = Recording(GradientDescent(step_size=0.05, max_steps=30))
    k, n = 5, 12
    out = BestOfN(rec, starts=k, pick=pick, init="uniform").solve(energy, x, y0, record_history=True, generator=gen(1))
    (call,) = rec.calls
    each = call["result"]
    per_start = (each.best_energy if pick == "best" else each.energy).view(k, n)
    assert (out.energy <= per_start).all()
    torch.testing.assert_close(out.energy, per_start.min(0).values, rtol=0, atol=0)
    assert torch.equal(out.start_index, per_start.argmin(0))
    assert torch.equal(call["y0"][:n], y0)  # start 0 is the given start
    # the record belongs together: the answer has the energy reported, the history is the winner's
    torch.testing.assert_close(energy_of(energy, x, out.y), out.energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(energy_of(energy, x, out.best_y), out.best_energy, rtol=1e-12, atol=1e-12)
    win = out.start_index * n + torch.arange(n)
    assert torch.equal(out.energy_history, each.energy_history[:, win])
    assert torch.equal(out.steps, each.steps.view(k, n).sum(0))


@pytest.mark.parametrize("pick", ["best", "final"])
def test_one_start_is_the_wrapped_solver(pick: str) -> None:
    x, y0 = double_well(6)
    energy = DoubleWell()
    gd = GradientDescent(step_size=0.05, max_steps=20, noise=0.01)
    ref = gd.solve(energy, x, y0, record_history=True, record_trajectory=True, snapshots=[0, 5, 20], generator=gen(2))
    out = BestOfN(gd, starts=1, pick=pick).solve(
        energy, x, y0, record_history=True, record_trajectory=True, snapshots=[0, 5, 20], generator=gen(2)
    )
    assert torch.equal(out.y, ref.best_y if pick == "best" else ref.y)
    assert torch.equal(out.energy, ref.best_energy if pick == "best" else ref.energy)
    for name in ("best_y", "best_energy", "best_step", "steps", "status", "energy_history", "step_size"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    for b in (0, 5, 20):
        assert torch.equal(out.snapshots[b], ref.snapshots[b])
    assert all(torch.equal(a, b) for a, b in zip(out.trajectory, ref.trajectory, strict=True))
    assert (out.start_index == 0).all()
    assert BestOfN(gd, starts=1).snapshots_match_budgets and not BestOfN(gd, starts=2).snapshots_match_budgets


def test_deterministic_under_a_seed() -> None:
    x, y0 = double_well(8)
    energy = DoubleWell()
    solver = BestOfN(GradientDescent(step_size=0.05, max_steps=10, noise=0.01), starts=4, init="perturb", scale=0.5)
    a = solver.solve(energy, x, y0, snapshots=[3], generator=gen(3))
    b = solver.solve(energy, x, y0, snapshots=[3], generator=gen(3))
    c = solver.solve(energy, x, y0, snapshots=[3], generator=gen(4))
    for name in ("y", "energy", "steps", "start_index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.snapshots[3], b.snapshots[3])
    assert not torch.equal(a.y, c.y)


@pytest.mark.parametrize("init", ["uniform", "perturb"])
def test_starts_are_drawn_as_asked(init: str) -> None:
    n, k, scale = 200, 4, 0.3
    x = torch.ones(n, 1, dtype=DT)
    y0 = torch.full((n, 1), 5.0, dtype=DT)
    rec = Recording(GradientDescent(step_size=0.01, max_steps=0))
    BestOfN(rec, starts=k, init=init, scale=scale).solve(DoubleWell(), x, y0, generator=gen(5))
    starts = rec.calls[0]["y0"].view(k, n)
    assert torch.equal(starts[0], y0[:, 0])
    rest = starts[1:]
    if init == "uniform":
        assert rest.abs().max() <= scale and rest.std() == pytest.approx(scale / 3**0.5, rel=0.1)
    else:
        assert (rest - 5.0).std() == pytest.approx(scale, rel=0.1)


def test_graph_batch_answers_land_in_the_original_layout() -> None:
    task = ShortestPath()
    problem = task.generate(6, torch.tensor([3.0, 9.0, 4.0, 7.0, 5.0, 6.0]), gen(6))
    energy = GNNEnergy(**task.dims())
    y0 = task.init_answer(problem, gen(7))
    k, n = 3, 6
    rec = Recording(GradientDescent(step_size=5.0, max_steps=4))
    out = BestOfN(rec, starts=k, init="uniform").solve(
        energy, problem.x, y0, segment=problem.segment, snapshots=[2], generator=gen(8)
    )
    assert out.y.shape == y0.shape and out.num_instances == n
    each, seg_rep = rec.calls[0]["result"], rec.calls[0]["segment"]
    assert seg_rep.shape[0] == k * y0.shape[0]
    for i in range(n):
        rows = problem.segment == i
        won = seg_rep == int(out.start_index[i]) * n + i
        assert torch.equal(out.y[rows], each.best_y[won])
        assert torch.equal(out.snapshots[2][rows], each.snapshots[2][won])
    # rows in the wrong place would be scored on the wrong edges
    torch.testing.assert_close(energy_of(energy, problem.x, out.y), out.energy, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.steps, torch.full((n,), k * 4))
    # one start hands the batch over untouched
    gd = rec.inner
    ref = gd.solve(energy, problem.x, y0, segment=problem.segment, generator=gen(8))
    alone = BestOfN(gd, starts=1, pick="final").solve(energy, problem.x, y0, segment=problem.segment, generator=gen(8))
    assert torch.equal(alone.y, ref.y)


@pytest.mark.parametrize("learnable", [False, True])
def test_restarts_rescue_an_instance_whose_every_start_diverged(learnable: bool) -> None:
    """Curvature 3 with step 1 flips and doubles the error every step; 0.5 and 0.25 do not."""
    n, k, T = 4, 3, 30
    b = torch.zeros(n, 2, dtype=DT)
    w = torch.tensor([[3.0, 3.0], [0.5, 0.5], [0.25, 0.5], [0.5, 0.25]], dtype=DT)
    x, y0 = torch.stack([b, w], 1), torch.full((n, 2), 0.5, dtype=DT)
    energy = Bounded(2)
    gd = GradientDescent(step_size=1.0, max_steps=T, learnable_step=learnable)
    before = gd.log_step_size.detach().clone()
    plain = BestOfN(gd, starts=k, pick="final", init="uniform").solve(energy, x, y0, generator=gen(9))
    assert plain.status[0] == int(Status.DIVERGED) and torch.isnan(plain.energy[0])
    out = BestOfN(gd, starts=k, pick="final", restarts=2, init="uniform").solve(energy, x, y0, generator=gen(9))
    assert out.status[0] == int(Status.MAX_STEPS) and torch.isfinite(out.y[0]).all()
    torch.testing.assert_close(out.y[0], b[0], atol=1e-6, rtol=0)
    assert out.start_index[0] >= k  # a rerun won
    assert plain.steps[0] < out.steps[0] and out.steps[0] > k * T  # the failed starts cost too
    assert out.step_size[0] == pytest.approx(0.5)  # the winning rerun's shrunk step
    for name in ("y", "energy", "steps", "status", "start_index"):
        assert torch.equal(getattr(out, name)[1:], getattr(plain, name)[1:]), name
    assert torch.equal(gd.log_step_size.detach(), before)  # the step size is restored


def test_wraps_adaptive_descent_and_keeps_its_records() -> None:
    x, y0 = double_well(6)
    energy = DoubleWell()
    adaptive = AdaptiveDescent(
        GradientDescent(step_size=0.05), rules=[EnergyPlateau(tol=1e-3, patience=2)], max_steps=200
    )
    rec = Recording(adaptive)
    out = BestOfN(rec, starts=3, init="uniform").solve(energy, x, y0, generator=gen(10))
    each = rec.calls[0]["result"]
    win = out.start_index * 6 + torch.arange(6)
    assert out.rules == ("plateau",) and torch.equal(out.stopped_by, each.stopped_by[win])
    assert (out.steps < 3 * 200).all()  # halting saved compute in every start


def test_training_is_the_wrapped_solver_and_a_trained_model_is_wrapped() -> None:
    x, y0 = double_well(4)
    energy = DoubleWell()
    gd = GradientDescent(step_size=0.05, max_steps=3)
    ref = gd.solve(energy, x, y0.clone().requires_grad_(True), differentiable=True)
    out = BestOfN(gd, starts=4, init="uniform").solve(energy, x, y0.clone().requires_grad_(True), differentiable=True)
    assert out.y.requires_grad and torch.equal(out.y, ref.y) and out.start_index is None
    wrapper = BestOfN(starts=2)
    assert wrapper.max_steps is None
    with pytest.raises(ValueError, match="no descent solver"):
        wrapper.solve(energy, x, y0)
    assert wrapper.with_base(gd) is wrapper and wrapper.descent is gd and wrapper.max_steps == 3
    assert BestOfN(gd, max_steps=7).max_steps == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"init": "gaussian"}, "Unknown init 'gaussian'. Valid choices: task, uniform, perturb."),
        ({"pick": "last"}, "Unknown pick 'last'. Valid choices: best, final."),
        ({"starts": 0}, "starts must be a positive integer"),
        ({"scale": 0.0}, "scale must be positive"),
        ({"restarts": -1}, "restarts must be an integer >= 0"),
        ({"restart_shrink": 1.0}, r"restart_shrink must be in \(0, 1\)"),
        ({"max_steps": -2}, "max_steps must be >= 0"),
    ],
)
def test_invalid_arguments_say_what_is_valid(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BestOfN(GradientDescent(), **kwargs)


def test_verified_picks_prefer_a_checked_answer_and_restart_the_rest() -> None:
    """With verified=True a start whose answer passes the task's check wins over a lower-energy one
    that does not, and instances with no verified start get fresh rounds until they have one."""
    energy = DoubleWell()
    x, _ = double_well()  # the tilt makes the well near -1 the lower one
    y0 = torch.full_like(x, -0.8)  # start 0 sits in the well the check rejects

    def verify(index: Tensor, y: Tensor) -> Tensor:  # a check that accepts only the well near +1
        return (y > 0.5).all(dim=1)

    g = gen(12)
    starts = lambda index: torch.rand(index.numel(), 1, generator=g, dtype=DT) * 4 - 2  # noqa: E731
    descent = GradientDescent(step_size=0.05, max_steps=60)
    plain = BestOfN(descent, starts=2, restarts=0).solve(energy, x, y0, init=starts, verify=verify, generator=gen(1))
    checked = BestOfN(descent, starts=2, restarts=6, verified=True).solve(
        energy, x, y0, init=starts, verify=verify, generator=gen(1)
    )
    ok_plain, ok_checked = verify(torch.arange(len(x)), plain.y), verify(torch.arange(len(x)), checked.y)
    assert bool(ok_checked.all()) and int(ok_checked.sum()) > int(ok_plain.sum())
    assert bool((checked.evaluations >= plain.evaluations).all()) and bool(
        (checked.evaluations > plain.evaluations).any()
    )
    with pytest.raises(ValueError, match="verifier"):
        BestOfN(descent, starts=2, verified=True).solve(energy, x, y0, init=starts)
