"""IRED: the landscape schedule, landscape-conditioned energies and the denoising-contrastive objective.

The ground truth is an oracle family of quadratic landscapes whose gradient at any noised truth is
exactly the noise: E_k(x, z) = ||z - sqrt(abar_k) y*||^2 / (2 sqrt(1 - abar_k)), with y* = x.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction
from irem.energy_model import EnergyModel
from irem.errors import SettingError
from irem.ired.annealed import AnnealedDescent
from irem.ired.landscapes import LandscapeSchedule, LandscapeView, spread_budget
from irem.ired.objective import IREDObjective, corrupted
from irem.objective import TrainingBatch
from irem.problem import AnswerConstraint, Problem
from irem.solvers.gradient_descent import GradientDescent
from irem.task import Task


class Identity(Task):
    """y* = x: the oracle energy can be written in closed form."""

    name = "identity"

    def __init__(self, dim: int = 6, categorical: bool = False) -> None:
        super().__init__(difficulty=1.0, harder_difficulty=1.0, test_size=8, val_size=8)
        self.dim = dim

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        x = (torch.rand(n, self.dim, generator=generator) * 2 - 1) * 1.5
        return Problem(x=x, target=x.clone(), difficulty=torch.full((n,), float(difficulty)))

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        return ((y - problem.x) ** 2).mean(-1) < tol

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.dim, "y_dim": self.dim}


class Oracle(EnergyFunction):
    """Landscape k of the exact denoiser for y* = x (times `sign`, to flip the ranking)."""

    def __init__(self, landscapes: int = 10, sign: float = 1.0, gain: float = 1.0) -> None:
        super().__init__()
        self.landscapes, self.sign, self.gain = landscapes, sign, gain
        self.schedule = LandscapeSchedule(landscapes)
        self.calls: list[Tensor] = []

    def energy(self, x: Tensor, y: Tensor, step: int | Tensor = 0) -> Tensor:
        k = torch.as_tensor(step).long().expand(y.shape[0]) if torch.as_tensor(step).dim() == 0 else step
        self.calls.append(k.clone())
        s, sigma = self.schedule.signal(k)[:, None], self.schedule.noise(k)[:, None]
        return self.sign * self.gain * ((y - s * x) ** 2).sum(-1) / (2 * sigma[:, 0])


def batch_of(task: Task, n: int, seed: int = 0) -> TrainingBatch:
    problem = task.generate(n, 1.0, torch.Generator().manual_seed(seed))
    return TrainingBatch(problem=problem, y0=torch.zeros_like(problem.target), fresh=problem)


# -- the schedule --------------------------------------------------------------------------------------


def test_schedule_goes_from_sharp_to_smooth() -> None:
    s = LandscapeSchedule(10)
    abar = s.alpha_bar
    assert abar.shape == (10,) and bool((abar[1:] < abar[:-1]).all())
    assert 0.95 < float(abar[0]) < 1 and float(abar[-1]) < 1e-3
    k = torch.arange(10)
    assert torch.allclose(s.signal(k) ** 2 + s.noise(k) ** 2, torch.ones(10))


def test_spread_budget_counts_every_step_and_favours_sharp_landscapes() -> None:
    assert spread_budget(60, 10) == [6] * 10
    assert spread_budget(13, 10) == [2, 2, 2] + [1] * 7
    assert spread_budget(4, 10) == [1, 1, 1, 1] + [0] * 6
    assert all(sum(spread_budget(b, 7)) == b for b in range(40))
    with pytest.raises(ValueError, match="total >= 0"):
        spread_budget(-1, 10)


# -- landscape-conditioned MLP ---------------------------------------------------------------------------


def test_mlp_without_landscapes_is_unchanged() -> None:
    torch.manual_seed(0)
    plain = MLPEnergy(4, 3, width=16, depth=3)
    assert set(plain.state_dict()) == {f"net.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}
    x, y = torch.randn(5, 4), torch.randn(5, 3)
    assert torch.equal(plain.energy(x, y, 0), plain.energy(x, y, 7))  # step is ignored


def test_mlp_landscapes_condition_the_energy_per_instance() -> None:
    torch.manual_seed(0)
    e = MLPEnergy(4, 3, width=16, depth=3, landscapes=5, head="squared_norm")
    for film in e.landscape.films:  # the maps start at zero (every landscape alike); give them weights
        torch.nn.init.normal_(film.weight, std=0.5)
    x, y = torch.randn(4, 4), torch.randn(4, 3)
    per_instance = e.energy(x, y, torch.tensor([0, 1, 2, 3]))
    one_by_one = torch.stack([e.energy(x[i : i + 1], y[i : i + 1], i) for i in range(4)])[:, 0]
    assert torch.allclose(per_instance, one_by_one, atol=1e-6)
    assert not torch.allclose(e.energy(x, y, 0), e.energy(x, y, 4))
    assert bool((e.energy(x, y, 2) >= 0).all())  # a squared norm
    with pytest.raises(ValueError, match="5 landscapes"):
        e.energy(x, y, 5)
    with pytest.raises(ValueError, match="Valid choices: scalar, squared_norm"):
        MLPEnergy(4, 3, head="cube")


def test_landscape_energy_with_a_plain_solver_is_refused() -> None:
    with pytest.raises(SettingError, match="solver=annealed"):
        EnergyModel(MLPEnergy(4, 3, landscapes=10), GradientDescent(), IREDObjective())


# -- the objective ---------------------------------------------------------------------------------------


def test_denoising_target_is_the_noise() -> None:
    """The oracle's gradient at every noised truth is the noise: zero loss. Twice the oracle's
    gradient misses by the noise itself: a loss of E[eps^2] = 1."""
    task = Identity(dim=6)
    batch = batch_of(task, 4000)
    g = torch.Generator().manual_seed(1)
    exact = IREDObjective(contrast_weight=0.0).loss(task, Oracle(), GradientDescent(), batch, g)
    assert exact.logs["denoise"] < 1e-8
    doubled = IREDObjective(contrast_weight=0.0).loss(task, Oracle(gain=2.0), GradientDescent(), batch, g)
    assert doubled.logs["denoise"] == pytest.approx(1.0, abs=0.05)


def test_contrastive_term_ranks_the_truth_below_its_negative() -> None:
    """The oracle puts the noised truth lower than the descended, re-noised negative: ranked near 1
    and a loss below log 2; its negation ranks them the other way."""
    task = Identity(dim=6)
    batch = batch_of(task, 2000)
    right = IREDObjective().loss(task, Oracle(), GradientDescent(), batch, torch.Generator().manual_seed(2))
    wrong = IREDObjective().loss(task, Oracle(sign=-1.0), GradientDescent(), batch, torch.Generator().manual_seed(2))
    assert right.logs["ranked"] > 0.7 and right.logs["contrast"] < math.log(2)
    assert wrong.logs["ranked"] < 0.1 and wrong.logs["contrast"] > math.log(2)


def test_contrastive_gradient_widens_the_gap_between_truth_and_negative() -> None:
    """A learnable gain on the oracle: at gain 1 the denoising term is at its minimum, so the loss's
    gradient is the contrast's, and descending it must raise the gain, i.e. raise E(negative) - E(positive)."""

    class Gained(Oracle):
        def __init__(self) -> None:
            super().__init__()
            self.log_gain = torch.nn.Parameter(torch.zeros(()))

        def energy(self, x: Tensor, y: Tensor, step: int | Tensor = 0) -> Tensor:
            return self.log_gain.exp() * super().energy(x, y, step)

    task, energy = Identity(dim=6), Gained()
    out = IREDObjective().loss(task, energy, GradientDescent(), batch_of(task, 1000), torch.Generator().manual_seed(3))
    out.loss.backward()
    assert float(energy.log_gain.grad) < 0
    energy.log_gain.grad = None
    no_contrast = IREDObjective(contrast_weight=0.0)
    no_contrast.loss(
        task, energy, GradientDescent(), batch_of(task, 1000), torch.Generator().manual_seed(3)
    ).loss.backward()
    assert abs(float(energy.log_gain.grad)) < 1e-5  # the denoising term alone is at its minimum


def test_objective_draws_one_landscape_per_example_and_keeps_fixed_entries() -> None:
    task = Identity(dim=6)
    problem = task.generate(64, 1.0, torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 6, dtype=torch.bool)
    mask[:, :2] = True
    problem.constraint = AnswerConstraint(mask=mask, values=problem.x.clone())
    oracle = Oracle()
    batch = TrainingBatch(problem=problem, y0=torch.zeros(64, 6), fresh=problem)
    IREDObjective().loss(task, oracle, GradientDescent(), batch, torch.Generator().manual_seed(0))
    drawn = oracle.calls[0]
    assert drawn.shape == (64,) and len(set(drawn.tolist())) > 5  # per example, not one per batch
    assert all(torch.equal(c, drawn) for c in oracle.calls)  # every term on the example's own landscape


def test_objective_refuses_an_energy_without_landscapes() -> None:
    task = Identity(dim=3)
    with pytest.raises(ValueError, match="energy.landscapes=10"):
        IREDObjective().loss(task, MLPEnergy(3, 3), GradientDescent(), batch_of(task, 4), torch.Generator())


def test_categorical_corruption_changes_a_few_positions() -> None:
    class Cells(Identity):
        answer_kind = "categorical"

    task = Cells()
    y = torch.nn.functional.one_hot(torch.randint(0, 9, (200, 81)), 9).float() * 2 - 1
    out = corrupted(task, None, y, torch.Generator().manual_seed(0), 0.05)
    changed = (out.argmax(-1) != y.argmax(-1)).float().mean()
    assert 0.02 < float(changed) < 0.06  # 5% drawn, 1/9 of them keep their class
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    assert corrupted(Identity(), None, y, torch.Generator(), 0.05) is None


def test_view_scales_the_answer_to_its_landscape() -> None:
    oracle, schedule = Oracle(), LandscapeSchedule(10)
    x = torch.randn(3, 6)
    view = LandscapeView(oracle, schedule, 4)
    assert torch.allclose(view.energy(x, x), torch.zeros(3), atol=1e-6)  # the truth is the view's minimum
    assert bool((view.energy(x, x + 0.1) > 0).all())


def test_sudoku_energy_takes_landscapes_and_the_objective_corrupts_boards() -> None:
    """IRED on Sudoku: the conv energy conditioned per instance, negatives by corrupted cells, and the
    givens kept at their (scaled) values in every noised board the energy sees."""
    from irem.energies.sudoku_conv import SudokuConvEnergy
    from irem.tasks.sudoku import Sudoku

    torch.manual_seed(0)
    task = Sudoku(relaxation="pm1", test_size=4, val_size=4)
    energy = SudokuConvEnergy(width=8, depth=2, landscapes=10)
    for film in energy.landscape.films:
        torch.nn.init.normal_(film.weight, std=0.5)
    problem = task.sample(6, torch.Generator().manual_seed(0))
    seen: list[Tensor] = []
    original = energy.energy

    def spy(x, y, step=0):
        seen.append(y.detach().clone())
        return original(x, y, step)

    energy.energy = spy
    batch = TrainingBatch(problem=problem, y0=task.init_answer(problem, torch.Generator()), fresh=problem)
    out = IREDObjective(contrast_weight=0.05, clamp=1.0).loss(
        task, energy, AnnealedDescent(clamp=1.0), batch, torch.Generator().manual_seed(1)
    )
    assert math.isfinite(float(out.loss.detach())) and out.loss.requires_grad
    mask, values = problem.constraint.mask, problem.constraint.values
    for y in seen[-2:]:  # positive and negative: givens at sqrt(abar_k) times their +-1 value
        ratio = y[mask] / values[mask]
        assert bool((ratio > 0).all()) and bool((ratio <= 1).all())
    a = energy.energy(problem.x, seen[-1], torch.zeros(6, dtype=torch.long))
    b = energy.energy(problem.x, seen[-1], torch.full((6,), 9))
    assert not torch.allclose(a, b)
