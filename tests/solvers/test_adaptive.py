"""solvers/halting.py and solvers/adaptive.py: per-instance stopping that shrinks the batch.

Checked against plain GradientDescent, which the adaptive solver must reproduce exactly for every
instance up to the step where that instance stopped, on a quadratic whose per-instance curvature
sets how fast it converges, and on a batch of graphs with a segmented answer.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_gradient_descent import DT, Quadratic, gen
from torch import Tensor

from irem.energies.gnn import GNNEnergy
from irem.energies.mlp import MLPEnergy
from irem.problem import Status
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import BudgetCap, EnergyPlateau, GradNorm, HaltingRule, StepCollapse, StepInfo, Verified
from irem.tasks.graph import ShortestPath


def quadratic_problem(n: int = 6, dim: int = 3) -> tuple[Tensor, Tensor]:
    """Curvatures spread over a factor of 30: with step 1, instance i contracts by 1 - w_i."""
    b = torch.randn(n, dim, generator=gen(1), dtype=DT)
    w = torch.logspace(math.log10(0.02), math.log10(0.6), n, dtype=DT).unsqueeze(1).expand(n, dim).clone()
    return torch.stack([b, w], 1), torch.zeros(n, dim, dtype=DT)


class CountingQuadratic(Quadratic):
    """Records the batch size of every energy evaluation."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.sizes: list[int] = []

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        self.sizes.append(y.shape[0])
        return super().energy(x, y, step)


def test_without_rules_it_is_gradient_descent() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=1.0, max_steps=15)
    ref = gd.solve(energy, x, y0, record_history=True, snapshots=[0, 5, 15])
    out = AdaptiveDescent(gd, rules=[], max_steps=15).solve(energy, x, y0, record_history=True, snapshots=[0, 5, 15])
    for name in ("y", "best_y", "energy", "best_energy", "best_step", "steps", "status", "energy_history"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    for b in (0, 5, 15):
        assert torch.equal(out.snapshots[b], ref.snapshots[b])


@pytest.mark.parametrize(("accept_if_lower", "restart"), [(False, False), (True, False), (True, True)])
def test_with_momentum_each_instance_matches_its_own_descent(accept_if_lower: bool, restart: bool) -> None:
    """Velocities are per instance and follow their instances when the batch shrinks (and are
    restarted per instance)."""
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(
        step_size=1.5, max_steps=200, momentum=0.8 if restart else 0.6, accept_if_lower=accept_if_lower, restart=restart
    )
    out = AdaptiveDescent(gd, rules=[GradNorm(1e-6)], max_steps=200).solve(energy, x, y0)
    assert len(set(out.steps.tolist())) > 3  # instances stopped at different steps
    for i, k in enumerate(out.steps.tolist()):
        alone = gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=k)
        torch.testing.assert_close(out.y[i], alone.y[0], rtol=0, atol=1e-12)


def test_a_prepared_input_is_indexed_when_the_batch_shrinks_not_prepared_again() -> None:
    """MLPEnergy's prepared x half follows its instances (PreparedInput.select_instances), so the
    solve prepares once and every instance still matches its own descent."""
    torch.manual_seed(0)
    energy = MLPEnergy(x_dim=5, y_dim=3, width=16, depth=2).double()
    calls: list[int] = []
    prepare = energy.prepare
    energy.prepare = lambda x: calls.append(x.shape[0]) or prepare(x)  # type: ignore[method-assign]
    x = torch.randn(8, 5, generator=gen(2), dtype=DT)
    y0 = torch.randn(8, 3, generator=gen(3), dtype=DT)
    gd = GradientDescent(step_size=0.05, max_steps=60)
    stop_at = torch.tensor([3, 9, 9, 20, 41, 5, 60, 12])
    out = AdaptiveDescent(gd, rules=[StopAt(stop_at)], max_steps=60).solve(energy, x, y0)
    assert out.steps.tolist() == stop_at.tolist() and calls == [8]
    for i, k in enumerate(out.steps.tolist()):
        alone = gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=k)
        torch.testing.assert_close(out.y[i], alone.y[0], rtol=0, atol=1e-12)


def test_plateau_stops_flat_instances_first_and_each_matches_its_own_descent() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=1.0, max_steps=200)
    rule = EnergyPlateau(tol=1e-3, patience=2)
    out = AdaptiveDescent(gd, rules=[rule], max_steps=200).solve(energy, x, y0, snapshots=[10, 200])
    steps = out.steps.tolist()
    # higher curvature converges faster: steps fall strictly along the curvature ramp
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False)), steps
    assert (out.status == int(Status.CONVERGED)).all()
    assert out.rules == ("plateau",) and (out.stopped_by == 0).all()
    for i, k in enumerate(steps):
        alone = gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=k)
        assert torch.equal(out.y[i], alone.y[0])
        assert torch.equal(out.snapshots[200][i], alone.y[0])  # stopped early: the final iterate stands
        at10 = gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=min(k, 10))
        assert torch.equal(out.snapshots[10][i], at10.y[0])
        # and the rule was right to stop: the last two changes were under tol x the first one
        hist = gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=k, record_history=True).energy_history[:, 0]
        rel = (hist[1:] - hist[:-1]).abs() / (hist[1] - hist[0]).abs()
        assert (rel[-2:] < 1e-3).all() and not (rel[-3:-1] < 1e-3).all()


def test_finished_instances_leave_the_batch() -> None:
    x, y0 = quadratic_problem(n=8)
    energy = CountingQuadratic(3)
    AdaptiveDescent(GradientDescent(step_size=1.0), rules=[EnergyPlateau(1e-3, 2)], max_steps=300).solve(energy, x, y0)
    sizes = energy.sizes
    assert sizes[0] == 8 and sizes[-1] == 1
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))  # never grows back
    assert sum(sizes) < 0.6 * 8 * len(sizes)  # far less work than the full batch every step


def test_compact_below_defers_dropping_but_not_the_results() -> None:
    x, y0 = quadratic_problem(n=8)
    energy = CountingQuadratic(3)
    gd = GradientDescent(step_size=1.0)
    eager = AdaptiveDescent(gd, rules=[EnergyPlateau(1e-3, 2)], max_steps=300).solve(energy, x, y0)
    energy.sizes.clear()
    lazy = AdaptiveDescent(gd, rules=[EnergyPlateau(1e-3, 2)], max_steps=300, compact_below=0.5).solve(energy, x, y0)
    assert torch.equal(eager.y, lazy.y) and torch.equal(eager.steps, lazy.steps)
    assert len(set(energy.sizes)) < 8  # the batch shrank in fewer, larger cuts


def test_grad_norm_rule() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=1.0)
    out = AdaptiveDescent(gd, rules=[GradNorm(tol=1e-2)], max_steps=500).solve(energy, x, y0)
    assert (out.status == int(Status.CONVERGED)).all()
    b, w = x[:, 0], x[:, 1]
    norm = (w * (out.y - b)).norm(dim=1)
    assert (norm < 1e-2).all()
    before = [gd.solve(energy, x[i : i + 1], y0[i : i + 1], budget=int(k) - 1).y[0] for i, k in enumerate(out.steps)]
    assert all((w[i] * (before[i] - b[i])).norm() >= 1e-2 for i in range(len(before)))


def test_relative_grad_norm_takes_longer_on_flatter_instances() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=1.0)
    out = AdaptiveDescent(gd, rules=[GradNorm(tol=1e-3, relative=True)], max_steps=1000).solve(energy, x, y0)
    steps = out.steps.tolist()
    assert all(a > b for a, b in zip(steps, steps[1:], strict=False)), steps
    b, w = x[:, 0], x[:, 1]
    first = gd.solve(energy, x, y0, budget=1).y
    start = (w * (first - b)).norm(dim=1)
    assert ((w * (out.y - b)).norm(dim=1) < 1e-3 * start).all()


def test_step_collapse_with_accept_if_lower_and_budget_cap() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=8.0, accept_if_lower=True, shrink=0.5)  # too large for the stiff instances
    out = AdaptiveDescent(gd, rules=[StepCollapse(min_step=1e-3), BudgetCap(60)], max_steps=100).solve(energy, x, y0)
    assert (out.steps <= 60).all()
    assert set(out.stopped_by.tolist()) <= {0, 1}
    collapsed = out.stopped_by == 0
    assert collapsed.any()  # some instance ran out of step before the cap
    capped = out.stopped_by == 1
    assert (out.steps[capped] == 60).all()


def test_min_steps_holds_rules_back() -> None:
    x, y0 = quadratic_problem()
    out = AdaptiveDescent(GradientDescent(step_size=1.0), rules=[BudgetCap(0)], max_steps=20, min_steps=4).solve(
        Quadratic(3), x, y0
    )
    assert (out.steps == 4).all()


class NaNForInstance(Quadratic):
    """Non-finite energy for the instance whose b[0] equals `marker`, from step 3 on."""

    def __init__(self, dim: int, marker: float) -> None:
        super().__init__(dim)
        self.marker = marker

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        e = super().energy(x, y, step)
        bad = (x[:, 0, 0] == self.marker) & (step >= 3)
        return torch.where(bad, torch.full_like(e, math.nan), e)


def test_a_diverged_instance_stops_alone() -> None:
    x, y0 = quadratic_problem()
    energy = NaNForInstance(3, marker=float(x[4, 0, 0]))
    gd = GradientDescent(step_size=1.0)
    out = AdaptiveDescent(gd, rules=[EnergyPlateau(1e-3, 2)], max_steps=200).solve(energy, x, y0)
    assert out.status[4] == int(Status.DIVERGED) and math.isnan(out.energy[4])
    assert out.steps[4] == 3
    ref = AdaptiveDescent(gd, rules=[EnergyPlateau(1e-3, 2)], max_steps=200).solve(Quadratic(3), x, y0)
    others = torch.arange(6) != 4
    assert torch.equal(out.y[others], ref.y[others]) and torch.equal(out.steps[others], ref.steps[others])


class StopAt(HaltingRule):
    """Stops instance i at step stop_at[i]: per-instance rule state, indexed as the batch shrinks."""

    def __init__(self, stop_at: Tensor) -> None:
        self.stop_at = stop_at

    def start(self, n: int, device: torch.device) -> dict[str, Tensor]:
        return {"stop_at": self.stop_at.to(device)}

    def update(self, state: dict[str, Tensor], info: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        return info.t >= state["stop_at"], state


def test_graphs_are_compacted_per_instance() -> None:
    torch.manual_seed(0)
    task = ShortestPath()
    problem = task.generate(6, torch.tensor([3.0, 9.0, 4.0, 7.0, 5.0, 6.0]), gen(2))
    energy = GNNEnergy(**task.dims())
    y0 = task.init_answer(problem, gen(3))
    gd = GradientDescent(step_size=5.0)
    stop_at = torch.tensor([4, 12, 2, 7, 12, 1])
    out = AdaptiveDescent(gd, rules=[StopAt(stop_at)], max_steps=10).solve(
        energy, problem.x, y0, segment=problem.segment, snapshots=[3, 10]
    )
    assert out.steps.tolist() == [4, 10, 2, 7, 10, 1]
    for i in range(6):
        sub = problem.select(torch.tensor([i]))
        rows = problem.segment == i
        alone = gd.solve(energy, sub.x, y0[rows], budget=int(out.steps[i]), segment=sub.segment)
        torch.testing.assert_close(out.y[rows], alone.y, rtol=1e-4, atol=1e-5)
        at3 = gd.solve(energy, sub.x, y0[rows], budget=min(3, int(out.steps[i])), segment=sub.segment)
        torch.testing.assert_close(out.snapshots[3][rows], at3.y, rtol=1e-4, atol=1e-5)


def test_training_uses_the_wrapped_descent_and_eval_wraps_the_trained_solver() -> None:
    x, y0 = quadratic_problem()
    energy = Quadratic(3)
    gd = GradientDescent(step_size=1.0, max_steps=7)
    adaptive = AdaptiveDescent(rules=[EnergyPlateau()], max_steps=50)
    with pytest.raises(ValueError, match="no descent solver"):
        adaptive.solve(energy, x, y0)
    assert adaptive.with_base(gd) is adaptive and adaptive.descent is gd
    out = adaptive.solve(energy, x, y0, differentiable=True)
    assert (out.steps == 7).all()


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: EnergyPlateau(tol=0), "tol"),
        (lambda: EnergyPlateau(patience=0), "patience"),
        (lambda: GradNorm(tol=-1), "tol"),
        (lambda: StepCollapse(min_step=0), "min_step"),
        (lambda: BudgetCap(-1), "max_steps"),
        (lambda: AdaptiveDescent(max_steps=-1), "max_steps"),
        (lambda: AdaptiveDescent(compact_below=-0.1), "compact_below"),
        (lambda: AdaptiveDescent(rules=["plateau"]), "HaltingRule"),
    ],
)
def test_bad_arguments_are_named(make, word) -> None:
    with pytest.raises((ValueError, TypeError), match=word):
        make()


def test_the_verified_rule_stops_each_instance_once_its_answer_checks() -> None:
    """Verified halts on the task's verdict, instance by instance: an instance stops at the first step
    its answer is within the check's tolerance, which comes later for the slower (flatter) ones."""
    x, y0 = quadratic_problem()
    energy = Quadratic(3)

    def verify(index: Tensor, y: Tensor) -> Tensor:
        return ((y - x[index, 0]).abs() < 1e-2).all(dim=1)

    gd = GradientDescent(step_size=1.0, max_steps=400)
    out = AdaptiveDescent(gd, rules=[Verified()], max_steps=400, min_steps=1).solve(energy, x, y0, verify=verify)
    ref = gd.solve(energy, x, y0, record_trajectory=True)
    first_ok = [
        next(t for t, y in enumerate(ref.trajectory) if bool(verify(torch.tensor([i]), y[i : i + 1]))) for i in range(6)
    ]
    assert out.steps.tolist() == first_ok
    assert (out.status == int(Status.CONVERGED)).all() and out.rules == ("verified",)
    assert out.steps[0] > out.steps[-1]  # the flattest instance needed the most steps
    assert torch.equal(out.evaluations, out.steps + 1)
    with pytest.raises(ValueError, match="verifier"):
        AdaptiveDescent(gd, rules=[Verified()], max_steps=5).solve(energy, x, y0)
