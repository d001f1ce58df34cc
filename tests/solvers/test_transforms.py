"""solvers/transforms/: each transform against a closed-form case, and the chain's own rules.

A transform is checked through a `Descent` whose chain holds it, on energies where one or two steps
can be written down by hand (a quadratic, a linear energy on the simplex), so what is tested is the
step a solver really takes.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_gradient_descent import DT, Quadratic, gen, quadratic_problem
from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import simplex_projection
from irem.solvers.descent import Descent
from irem.solvers.transforms.accept import AcceptIfLower
from irem.solvers.transforms.clip import Clip
from irem.solvers.transforms.mirror import ExponentiatedGradient
from irem.solvers.transforms.momentum import Momentum
from irem.solvers.transforms.noise import Noise
from irem.solvers.transforms.normalize import Normalize
from irem.solvers.transforms.per_coordinate import ScaleByAdam, ScaleByRMS
from irem.solvers.transforms.project import Project
from irem.solvers.transforms.random_step import RandomStepSize
from irem.solvers.transforms.schedule import StepSchedule


def one_step(chain: list, x: Tensor, y0: Tensor, energy: EnergyFunction, step: float = 0.5, budget: int = 1, **kw):
    return Descent(step_size=step, transforms=chain).solve(energy, x, y0, budget=budget, record_trajectory=True, **kw)


def grad_of(energy: EnergyFunction, x, y: Tensor) -> Tensor:
    y = y.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(energy.energy(x, y).sum(), y)
    return g


class Linear(EnergyFunction):
    """E = sum of c * p per position, p the answer itself or softmax of it (x holds c)."""

    def __init__(self, softmax: bool) -> None:
        super().__init__()
        self.softmax = softmax

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        p = torch.softmax(y, dim=-1) if self.softmax else y
        return (x * p).sum(dim=(1, 2))


# -- direction transforms --------------------------------------------------------------------------


def test_clip_caps_each_instances_norm_and_leaves_short_gradients() -> None:
    x, y0 = quadratic_problem(n=4)
    energy = Quadratic(3)
    g = grad_of(energy, x, y0)
    cap = float(g.norm(dim=1).median())
    r = one_step([Clip(cap)], x, y0, energy)
    norm = g.norm(dim=1, keepdim=True)
    expected = y0 - 0.5 * torch.where(norm > cap, g * cap / norm, g)
    torch.testing.assert_close(r.y, expected)


def test_normalize_moves_every_instance_by_the_step_whatever_its_scale() -> None:
    x, y0 = quadratic_problem(n=3)
    x[:, 1] *= torch.tensor([1e-3, 1.0, 1e3], dtype=DT)[:, None]  # curvatures six orders apart
    r = one_step([Normalize()], x, y0, Quadratic(3), step=0.1)
    moved = (r.y - y0).pow(2).mean(dim=1).sqrt()
    torch.testing.assert_close(moved, torch.full((3,), 0.1, dtype=DT))


def test_adam_first_step_is_the_sign_and_the_second_follows_the_moments() -> None:
    x, y0 = quadratic_problem(n=2)
    energy = Quadratic(3)
    r = one_step([ScaleByAdam(b1=0.9, b2=0.999, eps=0.0)], x, y0, energy, step=0.1, budget=2)
    g0 = grad_of(energy, x, y0)
    y1 = y0 - 0.1 * torch.sign(g0)  # bias-corrected moments of one gradient: m/sqrt(v) = sign(g)
    torch.testing.assert_close(r.trajectory[1], y1)
    g1 = grad_of(energy, x, y1)
    m = (0.9 * 0.1 * g0 + 0.1 * g1) / (1 - 0.9**2)
    v = (0.999 * 0.001 * g0**2 + 0.001 * g1**2) / (1 - 0.999**2)
    torch.testing.assert_close(r.y, y1 - 0.1 * m / v.sqrt())


def test_rmsprop_first_step_is_the_sign_over_the_root_of_one_minus_decay() -> None:
    x, y0 = quadratic_problem(n=2)
    energy = Quadratic(3)
    r = one_step([ScaleByRMS(decay=0.9, eps=0.0)], x, y0, energy, step=0.1)
    torch.testing.assert_close(r.y, y0 - 0.1 * torch.sign(grad_of(energy, x, y0)) / math.sqrt(0.1))


def test_exponentiated_gradient_over_probabilities_is_the_multiplicative_update() -> None:
    c = torch.rand(2, 5, 4, generator=gen(0), dtype=DT)
    p0 = torch.softmax(torch.randn(2, 5, 4, generator=gen(1), dtype=DT), dim=-1)
    r = one_step([ExponentiatedGradient(over="probabilities")], c, p0, Linear(softmax=False), step=0.7)
    expected = p0 * torch.exp(-0.7 * c)
    torch.testing.assert_close(r.y, expected / expected.sum(-1, keepdim=True))


def test_exponentiated_gradient_over_logits_moves_softmax_as_over_probabilities() -> None:
    """In logits, the step y - step * (dE/dy) / softmax(y) is exponentiated gradient on softmax(y)."""
    c = torch.rand(2, 5, 4, generator=gen(0), dtype=DT)
    y0 = torch.randn(2, 5, 4, generator=gen(1), dtype=DT)
    r = one_step([ExponentiatedGradient(over="logits")], c, y0, Linear(softmax=True), step=0.7)
    p0 = torch.softmax(y0, -1)
    expected = p0 * torch.exp(-0.7 * c)
    torch.testing.assert_close(torch.softmax(r.y, -1), expected / expected.sum(-1, keepdim=True))
    plain = one_step([], c, y0, Linear(softmax=True), step=0.7)  # the Euclidean step is another one
    assert not torch.allclose(torch.softmax(plain.y, -1), torch.softmax(r.y, -1))


# -- the step size ----------------------------------------------------------------------------------------


def test_step_schedule_scales_each_step_of_the_budget() -> None:
    x, y0 = quadratic_problem(n=2)
    x[:, 1] = 1.0  # E = |y - b|^2 / 2: each step contracts the error by (1 - step * factor)
    r = one_step([StepSchedule("linear", 0.25)], x, y0, Quadratic(3), step=0.5, budget=3)
    factors = [1.0, 0.625, 0.25]  # linear from 1 to 0.25 over three steps
    error = y0 - x[:, 0]
    for t, f in enumerate(factors, start=1):
        error = error * (1 - 0.5 * f)
        torch.testing.assert_close(r.trajectory[t] - x[:, 0], error)


def test_random_step_size_draws_per_instance_in_training_only() -> None:
    x, y0 = quadratic_problem(n=64)
    solver = Descent(step_size=0.1, max_steps=1, transforms=[RandomStepSize(0.25, 4.0)])
    trained = solver.solve(Quadratic(3), x, y0, differentiable=True, generator=gen(0))
    factors = trained.step_size / 0.1
    assert float(factors.min()) >= 0.25 and float(factors.max()) <= 4.0 and float(factors.std()) > 0.5
    inference = solver.solve(Quadratic(3), x, y0, generator=gen(0)).step_size
    torch.testing.assert_close(inference, torch.full((64,), 0.1, dtype=DT), rtol=1e-6, atol=0)


# -- moves ----------------------------------------------------------------------------------------------


def test_nesterov_takes_the_look_ahead_step() -> None:
    """Two steps by hand (torch's SGD with nesterov=True): v1 = -u0, y1 = y0 + coef * v1 - u0;
    v2 = coef * v1 - u1, y2 = y1 + coef * v2 - u1, with u = step * dE/dy where the iterate stands."""
    x, y0 = quadratic_problem(n=3)
    energy = Quadratic(3)
    r = one_step([Momentum(0.6, nesterov=True)], x, y0, energy, step=0.3, budget=2)
    u0 = 0.3 * grad_of(energy, x, y0)
    v1 = -u0
    y1 = y0 + 0.6 * v1 - u0
    torch.testing.assert_close(r.trajectory[1], y1)
    u1 = 0.3 * grad_of(energy, x, y1)
    torch.testing.assert_close(r.y, y1 + 0.6 * (0.6 * v1 - u1) - u1)
    sgd = torch.optim.SGD([y := y0.clone().requires_grad_(True)], lr=0.3, momentum=0.6, nesterov=True)
    for _ in range(2):
        sgd.zero_grad()
        energy.energy(x, y).sum().backward()
        sgd.step()
    torch.testing.assert_close(r.y, y.detach())


def test_nesterov_needs_fewer_steps_than_plain_descent_on_an_ill_conditioned_quadratic() -> None:
    x, y0 = quadratic_problem(n=8, w_range=(0.01, 1.0))
    energy = Quadratic(3)
    plain = Descent(step_size=1.0, transforms=[]).solve(energy, x, y0, budget=60)
    nesterov = Descent(step_size=1.0, transforms=[Momentum(0.8, nesterov=True)]).solve(energy, x, y0, budget=60)
    assert float((nesterov.y - x[:, 0]).abs().max()) < 0.1 * float((plain.y - x[:, 0]).abs().max())


def test_noise_follows_its_own_schedule_on_a_flat_energy() -> None:
    class Flat(EnergyFunction):
        def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
            return (0 * y).sum(dim=1)

    y0 = torch.zeros(3, 2, dtype=DT)
    r = one_step([Noise(0.2, schedule="exponential", final_fraction=0.01)], y0, y0, Flat(), budget=3, generator=gen(4))
    draws = gen(4)
    expected = y0
    for t, f in enumerate([1.0, 0.1, 0.01], start=1):
        expected = expected + 0.2 * f * torch.randn(3, 2, generator=draws, dtype=DT)
        torch.testing.assert_close(r.trajectory[t], expected)


@pytest.mark.parametrize("onto", ["box", "simplex"])
def test_project_keeps_every_iterate_in_its_set(onto: str) -> None:
    x, y0 = quadratic_problem(n=4, dim=5)
    x[:, 0] *= 10  # the minimiser lies far outside both sets
    r = Descent(step_size=0.5, transforms=[Project(onto, -0.5, 0.5)]).solve(
        Quadratic(5), x, y0, budget=20, record_trajectory=True
    )
    for y in r.trajectory[1:]:
        if onto == "box":
            assert float(y.abs().max()) <= 0.5
        else:
            torch.testing.assert_close(y, simplex_projection(y))
            assert float(y.min()) >= 0


def test_simplex_projection_is_the_closest_point() -> None:
    v = torch.randn(20, 6, generator=gen(5), dtype=DT)
    p = simplex_projection(v)
    torch.testing.assert_close(p.sum(-1), torch.ones(20, dtype=DT))
    for _ in range(50):  # no other point of the simplex is closer
        q = torch.distributions.Dirichlet(torch.ones(6, dtype=DT)).sample((20,))
        assert bool(((v - p).norm(dim=-1) <= (v - q).norm(dim=-1) + 1e-12).all())


# -- the chain -------------------------------------------------------------------------------------------


def test_a_chain_decides_acceptance_and_applies_its_move_once() -> None:
    with pytest.raises(ValueError, match="acceptance and applies its move once"):
        Descent(transforms=[AcceptIfLower(), AcceptIfLower(0.25)])
    with pytest.raises(TypeError, match=r"transforms must be descent transforms .* got clip \(float\)"):
        Descent(transforms={"clip": 1.0})


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: Clip(0), "max_norm"),
        (lambda: Normalize(eps=-1), "eps"),
        (lambda: StepSchedule("sawtooth"), "Valid choices: constant, linear, cosine, exponential"),
        (lambda: StepSchedule("cosine", 2.0), "final_fraction"),
        (lambda: Momentum(1.0), "coef"),
        (lambda: Noise(-0.1), "scale"),
        (lambda: ScaleByAdam(b1=1.0), "b1"),
        (lambda: ScaleByRMS(decay=-0.5), "decay"),
        (lambda: ExponentiatedGradient(over="scores"), "Valid choices: logits, probabilities"),
        (lambda: Project("ball"), "Valid choices: box, simplex"),
        (lambda: AcceptIfLower(0.0), "shrink"),
        (lambda: RandomStepSize(2.0, 1.0), "high"),
    ],
)
def test_each_transform_refuses_a_setting_out_of_range(make, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        make()


def test_describe_prints_the_solver_as_its_chain() -> None:
    solver = Descent(step_size=0.1, max_steps=20, transforms={"clip": Clip(1.0), "accept": AcceptIfLower()})
    assert solver.describe() == (
        "Descent(step_size=0.1, max_steps=20, backward=last): Clip(max_norm=1) -> AcceptIfLower(shrink=0.5)"
    )


def test_a_nan_instance_leaves_the_others_bit_identical_under_every_chain() -> None:
    from test_gradient_descent import NaNForFirst

    chains = [[Momentum(0.5, restart=True)], [ScaleByAdam()], [Clip(0.5), AcceptIfLower()], [Normalize()]]
    x, y0 = quadratic_problem(n=4)
    for chain in chains:
        solver = Descent(step_size=0.2, transforms=chain)
        bad = solver.solve(NaNForFirst(3, bad_from=2), x, y0, budget=8, record_history=True)
        rest = solver.solve(Quadratic(3), x[1:], y0[1:], budget=8, record_history=True)
        assert int(bad.status[0]) == 2 and bool(torch.isfinite(bad.y).all())
        for name in ("y", "steps", "status", "energy", "best_y", "best_energy", "best_step"):
            assert torch.equal(getattr(bad, name)[1:], getattr(rest, name)), (chain, name)
        assert torch.equal(bad.energy_history[:, 1:], rest.energy_history)
