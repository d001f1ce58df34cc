"""solvers/backward.py: the backward modes, one named setting each.

The named modes are the flags they replace (truncate, detach_steps), bit for bit; `implicit`
differentiates the final iterate by the implicit function theorem and must match a full unroll where
the descent converges, with training memory that does not grow with the number of steps.
"""

from __future__ import annotations

import pytest
import torch
from test_gradient_descent import DT, gen
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.problem import AnswerConstraint
from irem.solvers.backward import Implicit, backward_mode, conjugate_gradient
from irem.solvers.descent import Descent
from irem.solvers.gradient_descent import GradientDescent


class LearnedQuadratic(EnergyFunction):
    """E = y^T M y / 2 - c^T y with M = L L^T + I and c = W x: a stationary point y* = M^-1 W x that
    depends on every parameter, and a Hessian M that is not diagonal."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        g = gen(7)
        self.L = nn.Parameter(0.4 * torch.randn(dim, dim, generator=g, dtype=DT))
        self.W = nn.Parameter(torch.randn(dim, dim, generator=g, dtype=DT))

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        m = self.L @ self.L.T + torch.eye(self.L.shape[0], dtype=DT)
        return 0.5 * ((y @ m) * y).sum(-1) - ((x @ self.W.T) * y).sum(-1)


def loss_gradients(
    energy: EnergyFunction, solver: Descent, x: Tensor, y0: Tensor, target: Tensor, **kw
) -> list[Tensor]:
    energy.zero_grad()
    result = solver.solve(energy, x, y0, differentiable=True, **kw)
    ((result.y - target) ** 2).sum().backward()
    return [p.grad.clone() for p in energy.parameters()]


def problem(n: int = 5, dim: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    g = gen(1)
    return (
        torch.randn(n, dim, generator=g, dtype=DT),
        torch.rand(n, dim, generator=g, dtype=DT) * 2 - 1,
        torch.randn(n, dim, generator=g, dtype=DT),
    )


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("last", {"truncate": 1}),
        ("truncated:3", {"truncate": 3}),
        ("unroll", {"truncate": 0}),
        ("per_step", {"truncate": 0, "detach_steps": True}),
        ("per_step:2", {"truncate": 2, "detach_steps": True}),
    ],
)
def test_each_named_mode_is_the_flags_it_replaces(name: str, flags: dict) -> None:
    x, y0, target = problem()
    energy = LearnedQuadratic()
    named = loss_gradients(energy, Descent(step_size=0.3, max_steps=6, backward=name), x, y0, target)
    flat = loss_gradients(energy, GradientDescent(step_size=0.3, max_steps=6, **flags), x, y0, target)
    assert all(torch.equal(a, b) for a, b in zip(named, flat, strict=True))


def test_modes_are_resolved_by_name_and_unknown_ones_list_the_choices() -> None:
    assert str(backward_mode("truncated:3")) == "truncated:3" and backward_mode("unroll").steps is None
    assert backward_mode("last").graph_at(9, 10) and not backward_mode("last").graph_at(8, 10)
    assert isinstance(backward_mode("implicit"), Implicit) and not backward_mode("implicit").graph_at(10, 10)
    with pytest.raises(ValueError, match=r"Unknown backward mode 'truncate'\. Valid choices: last, truncated:<k>"):
        backward_mode("truncate")
    with pytest.raises(ValueError, match="a whole number >= 1"):
        backward_mode("truncated:0")
    with pytest.raises(ValueError, match="cg_steps"):
        Implicit(cg_steps=0)


def test_conjugate_gradient_solves_each_instances_system() -> None:
    g = gen(2)
    a = torch.randn(3, 6, 6, generator=g, dtype=DT)
    h = a @ a.transpose(1, 2) + 0.5 * torch.eye(6, dtype=DT)  # one SPD block per instance
    v = torch.randn(3, 6, generator=g, dtype=DT)
    u = conjugate_gradient(lambda w: (h @ w.unsqueeze(-1)).squeeze(-1), v, None, 3, steps=50, tol=1e-12)
    torch.testing.assert_close(u, torch.linalg.solve(h, v))


def test_implicit_gradient_matches_a_converged_full_unroll() -> None:
    x, y0, target = problem()
    energy = LearnedQuadratic()
    unrolled = loss_gradients(energy, Descent(step_size=0.3, max_steps=300, backward="unroll"), x, y0, target)
    implicit = loss_gradients(energy, Descent(step_size=0.3, max_steps=300, backward="implicit"), x, y0, target)
    for a, b in zip(implicit, unrolled, strict=True):
        assert float((a - b).norm() / b.norm()) < 1e-4
    short = loss_gradients(energy, Descent(step_size=0.3, max_steps=3, backward="unroll"), x, y0, target)
    assert float((short[0] - unrolled[0]).norm() / unrolled[0].norm()) > 1e-2  # not converged: another gradient


def test_implicit_gradient_leaves_fixed_entries_out() -> None:
    x, y0, target = problem()
    mask = torch.zeros_like(y0, dtype=torch.bool)
    mask[:, 0] = True
    constraint = AnswerConstraint(mask=mask, values=torch.full_like(y0, 0.3))
    energy = LearnedQuadratic()
    unrolled = loss_gradients(
        energy, Descent(step_size=0.3, max_steps=300, backward="unroll"), x, y0, target, constraint=constraint
    )
    implicit = loss_gradients(
        energy, Descent(step_size=0.3, max_steps=300, backward="implicit"), x, y0, target, constraint=constraint
    )
    for a, b in zip(implicit, unrolled, strict=True):
        assert float((a - b).norm() / b.norm()) < 1e-4


class Kept:
    """A tensor autograd saved for backward, counted while the graph holds it."""

    live = 0

    def __init__(self, t: Tensor) -> None:
        self.t, self.size = t, t.numel() * t.element_size()
        Kept.live += self.size

    def __del__(self) -> None:
        Kept.live -= self.size


def saved_bytes(energy: EnergyFunction, solver: Descent, x: Tensor, y0: Tensor) -> int:
    """The bytes autograd holds for the backward pass once a training solve has returned (what its loss's
    backward will need; the graph only grows during the solve, so this is its peak)."""
    Kept.live = 0
    with torch.autograd.graph.saved_tensors_hooks(Kept, lambda k: k.t):
        result = solver.solve(energy, x, y0, differentiable=True)
    held = Kept.live
    del result
    return held


def test_implicit_training_memory_does_not_grow_with_the_steps() -> None:
    x, y0, _ = problem(n=32, dim=16)
    energy = LearnedQuadratic(16)
    unroll = [saved_bytes(energy, Descent(step_size=0.1, max_steps=k, backward="unroll"), x, y0) for k in (10, 40, 160)]
    implicit = [
        saved_bytes(energy, Descent(step_size=0.1, max_steps=k, backward="implicit"), x, y0) for k in (10, 40, 160)
    ]
    assert unroll[2] > 10 * unroll[0]  # grows with the steps
    assert implicit[0] == implicit[1] == implicit[2] < unroll[0]
