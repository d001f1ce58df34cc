"""solvers/step.py: the one descent step every loop shares (state, constraints, momentum's restart).

The loops built on it are tested through their solvers (test_gradient_descent.py, test_adaptive.py,
test_best_of_n.py); these are the step's own pieces, and the answer constraint honoured by every
solver.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from test_gradient_descent import Quadratic, gen
from torch import Tensor

from irem.problem import AnswerConstraint, Box, Status
from irem.solver import Solver
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.best_of_n import BestOfN
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import EnergyPlateau, GradNorm
from irem.solvers.transform import StepContext
from irem.solvers.transforms.momentum import Momentum

DT = torch.float64


def restarted(velocity: Tensor, g: Tensor, segment: Tensor | None, n: int) -> Tensor:
    """The velocity Momentum(restart=True) keeps after a move `velocity` that led to gradient `g`."""
    state: dict[str, Tensor] = {}
    ctx = StepContext(velocity, g, torch.ones(n, dtype=DT), 1, 1, segment, n, None)
    Momentum(0.5, restart=True).after(state, velocity, torch.ones(n, dtype=torch.bool), g, ctx)
    return state["velocity"]


def test_restart_zeroes_the_velocity_of_instances_whose_gradient_points_along_it() -> None:
    velocity = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, -1.0]], dtype=DT)
    g = torch.tensor([[0.5, 9.0], [-1.0, -1.0], [1.0, 0.0], [1.0, 3.0]], dtype=DT)  # g.v: 0.5, -2, 0, 0
    out = restarted(velocity, g, None, 4)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, -1.0]], dtype=DT))
    # segmented answers (graphs): the inner product is per instance, over all its rows
    segment = torch.tensor([0, 0, 1, 1])
    out = restarted(velocity, g, segment, 2)
    torch.testing.assert_close(out[:2], velocity[:2])  # 0.5 - 2 < 0: kept
    torch.testing.assert_close(out[2:], velocity[2:])  # 0 + 0: kept
    out = restarted(velocity, -g, segment, 2)
    torch.testing.assert_close(out[:2], torch.zeros(2, 2, dtype=DT))
    torch.testing.assert_close(out[2:], velocity[2:])


# -- answer constraints, honoured by every solver ------------------------------------------------


def quadratic(n: int = 12, dim: int = 5) -> tuple[Quadratic, Tensor, Tensor]:
    g = gen(3)
    b = torch.randn(n, dim, generator=g, dtype=DT) * 3
    w = torch.rand(n, dim, generator=g, dtype=DT) + 0.2
    y0 = torch.rand(n, dim, generator=g, dtype=DT) * 2 - 1
    return Quadratic(dim), torch.stack([b, w], 1), y0


def fixed_entries(y0: Tensor) -> AnswerConstraint:
    mask = torch.rand(y0.shape, generator=gen(4)) < 0.4
    return AnswerConstraint(mask=mask, values=torch.randn(y0.shape, generator=gen(5), dtype=DT) * 7)


def uniform_starts(like: Tensor) -> Callable[[Tensor], Tensor]:
    g = gen(6)
    return lambda index: torch.rand(index.numel(), *like.shape[1:], generator=g, dtype=like.dtype) * 2 - 1


SOLVERS = {
    "gd": lambda: GradientDescent(step_size=0.5, max_steps=12),
    "gd_accept_momentum": lambda: GradientDescent(step_size=2.0, max_steps=12, accept_if_lower=True, momentum=0.5),
    "langevin_clip": lambda: GradientDescent(step_size=0.5, max_steps=12, noise=0.3, grad_clip=0.5),
    "adaptive": lambda: AdaptiveDescent(
        GradientDescent(step_size=0.5, max_steps=12), rules=[EnergyPlateau(tol=0.05, patience=1)], max_steps=12
    ),
    "best_of_n": lambda: BestOfN(GradientDescent(step_size=0.5, max_steps=12), starts=3),
    "best_of_n_adaptive": lambda: BestOfN(
        AdaptiveDescent(GradientDescent(step_size=0.5), rules=[GradNorm(tol=0.1)], max_steps=12), starts=2
    ),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_fixed_entries_are_bit_identical_after_every_solver(name: str) -> None:
    energy, x, y0 = quadratic()
    c = fixed_entries(y0)
    res = SOLVERS[name]().solve(
        energy,
        x,
        y0,
        constraint=c,
        record_trajectory=True,
        snapshots=[0, 3, 12],
        generator=gen(7),
        init=uniform_starts(y0),
    )
    answers = [res.y, res.best_y, *res.snapshots.values(), *res.trajectory]
    for y in answers:
        assert torch.equal(y[c.mask], c.values[c.mask])
    free = ~c.mask
    assert not torch.equal(res.y[free], y0[free])  # the free entries did move
    # and they moved towards the constrained minimiser (b + theta), which the fixed entries do not shift
    b = x[:, 0]
    assert (res.y[free] - b[free]).abs().mean() < (y0[free] - b[free]).abs().mean()


def test_fixed_entries_hold_in_a_differentiable_solve_and_gradients_skip_them() -> None:
    energy, x, y0 = quadratic()
    c = fixed_entries(y0)
    res = GradientDescent(step_size=0.5, max_steps=4, truncate=0).solve(
        energy, x, y0, constraint=c, differentiable=True
    )
    assert torch.equal(res.y[c.mask], c.values[c.mask])
    (grad,) = torch.autograd.grad(res.y[~c.mask].sum(), energy.theta)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_a_projection_holds_at_every_step() -> None:
    energy, x, y0 = quadratic()
    res = GradientDescent(step_size=0.5, max_steps=10).solve(
        energy, x, y0, constraint=AnswerConstraint(project=Box(-0.5, 0.5)), record_trajectory=True
    )
    for y in res.trajectory:
        assert float(y.abs().max()) <= 0.5
    # entries whose minimiser lies outside the box end on its face
    b = x[:, 0]
    outside = b.abs() > 2
    assert torch.allclose(res.y[outside].abs(), torch.full_like(res.y[outside], 0.5))


def test_adaptive_honours_the_wrapped_grad_tol_instance_by_instance() -> None:
    """grad_tol stops an instance in the adaptive loop exactly where it stops it in fixed descent."""
    energy, x, y0 = quadratic()
    gd = GradientDescent(step_size=0.3, max_steps=40, grad_tol=0.05)
    ref = gd.solve(energy, x, y0)
    out = AdaptiveDescent(gd, rules=[], max_steps=40).solve(energy, x, y0)
    assert (ref.status == int(Status.CONVERGED)).any() and (ref.steps < 40).any()
    for name in ("y", "steps", "status", "best_y", "best_energy"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name


def test_wrappers_read_the_descent_through_its_declared_interface() -> None:
    class NotAStepper(Solver):
        max_steps = 3

        def run(self, energy, x, y0, budget, request):  # noqa: ANN001, ANN201
            raise AssertionError("never reached")

    energy, x, y0 = quadratic()
    with pytest.raises(TypeError, match="AdaptiveDescent wraps descent solvers whose solve the one loop runs"):
        AdaptiveDescent(NotAStepper(), max_steps=3).solve(energy, x, y0)
    with pytest.raises(TypeError, match="no step size to scale"):
        NotAStepper().scaled_step(0.5)


def test_best_of_n_draws_extra_starts_from_the_task_start() -> None:
    """init=task (the default) takes every extra start from the sampler, for the instances it asks
    about; with a U(-1, 1) sampler it draws exactly what init=uniform draws from the same generator."""
    energy, x, y0 = quadratic()
    asked: list[Tensor] = []

    def sampler(index: Tensor) -> Tensor:
        asked.append(index.clone())
        return torch.full((index.numel(), y0.shape[1]), 0.25, dtype=DT)

    rec = GradientDescent(step_size=0.5, max_steps=0)
    res = BestOfN(rec, starts=3, pick="final").solve(energy, x, y0, init=sampler, snapshots=[0])
    assert len(asked) == 2 and all(torch.equal(a, torch.arange(12)) for a in asked)
    picked = res.start_index
    assert torch.equal(res.y[picked == 0], y0[picked == 0]) and torch.all(res.y[picked > 0] == 0.25)

    def task_uniform(g: torch.Generator) -> Callable[[Tensor], Tensor]:
        return lambda index: torch.rand((index.numel(), y0.shape[1]), generator=g, dtype=DT) * 2 - 1

    descent = GradientDescent(step_size=0.5, max_steps=5)
    a = BestOfN(descent, starts=4).solve(energy, x, y0, generator=gen(9), init=task_uniform(gen(9)))
    b = BestOfN(descent, starts=4, init="uniform").solve(energy, x, y0, generator=gen(9))
    assert torch.equal(a.y, b.y) and torch.equal(a.start_index, b.start_index)
    with pytest.raises(ValueError, match="init='uniform'"):
        BestOfN(descent, starts=2).solve(energy, x, y0)
