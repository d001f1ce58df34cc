"""EnergyModel's `input_stationarity`: the true pair must be stationary in x as well as in y.

That is what lets joint composition descend an energy in its input too (irem/composition.py): a
joint descent started at the truth should stay there.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from irem.energies.gnn import GNNEnergy
from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective, input_stationarity_loss
from irem.problem import Problem
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.graph import ShortestPath
from irem.tasks.matrix import Addition


class Tilted(EnergyFunction):
    """E = 0.5 ||y - x||^2 + c . x: minimised in y at y = x, with slope c in x there."""

    def __init__(self, c: Tensor) -> None:
        super().__init__()
        self.register_buffer("c", c)

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        return 0.5 * ((y - x) ** 2).sum(1) + x @ self.c


def test_the_loss_is_the_squared_input_move_of_one_step() -> None:
    """At (x, y* = x) the x-gradient is c - (y* - x) = c, so the move is step * c."""
    c = torch.tensor([0.3, -0.1, 0.2])
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    problem = Problem(x=x, target=x.clone())
    loss = input_stationarity_loss(Tilted(c), problem, step_size=2.0)
    assert float(loss.detach()) == pytest.approx(float(((2.0 * c) ** 2).mean()), rel=1e-6)


def trained(weight: float, iterations: int = 150) -> tuple[Addition, EnergyModel]:
    torch.manual_seed(0)
    task = Addition(size=2)
    m = EnergyModel(
        MLPEnergy(**task.dims(), width=32, depth=2),
        GradientDescent(step_size=1.0, max_steps=3),
        IREMObjective(input_stationarity=weight),
        replay_capacity=0,
    )
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(iterations):
        loss, _ = m.training_loss(task, task.sample(64, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return task, m


def input_move(task: Addition, m: EnergyModel) -> float:
    p = task.generate(256, 1.0, torch.Generator().manual_seed(7))
    return float(input_stationarity_loss(m.energy, p, 1.0).detach())


def test_training_with_the_term_makes_the_truth_stationary_in_x() -> None:
    task, plain = trained(0.0)
    _, held = trained(1.0)
    without, with_term = input_move(task, plain), input_move(task, held)
    assert with_term < 0.2 * without, (without, with_term)


def test_training_logs_the_term() -> None:
    task, m = trained(1.0, iterations=0)
    g = torch.Generator().manual_seed(3)
    _, logs = m.training_loss(task, task.sample(64, g), g)
    assert logs["input_stationarity"] > 0


def test_graph_inputs_are_differentiated_in_their_edge_values() -> None:
    """A graph's input is its edge_attr: the loss equals the squared edge-value gradient of the energy."""
    task = ShortestPath(min_nodes=3, max_nodes=5)
    g = torch.Generator().manual_seed(0)
    p = task.sample(4, g)
    torch.manual_seed(0)
    energy = GNNEnergy(**task.dims(), width=8, depth=2)
    before = p.x.edge_attr.clone()
    loss = input_stationarity_loss(energy, p, 3.0)
    assert torch.equal(p.x.edge_attr, before) and not p.x.edge_attr.requires_grad  # the batch is not touched
    loss.backward()  # differentiable in the energy's weights
    assert energy.edge_map.weight.grad is not None
    edges = p.x.edge_attr.clone().requires_grad_(True)
    graph = p.x.clone()
    graph.edge_attr = edges
    (expected,) = torch.autograd.grad(energy.energy(graph, p.target).sum(), edges)
    assert float(loss.detach()) == pytest.approx(float(((3.0 * expected) ** 2).mean()), rel=1e-5)


def test_inputs_without_rows_and_bad_settings_are_refused_by_name() -> None:
    p = Problem(x=[1.0, 2.0], target=torch.zeros(2, 1))
    with pytest.raises(
        ValueError, match="input_stationarity needs a target and an x that is a tensor .* got x of type list"
    ):
        input_stationarity_loss(MLPEnergy(x_dim=2, y_dim=1, width=4), p, 1.0)
    with pytest.raises(ValueError, match="input_stationarity must be >= 0"):
        IREMObjective(input_stationarity=-1.0)
