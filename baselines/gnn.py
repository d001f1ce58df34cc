"""Graph baselines that predict edge values directly: a feed-forward GNN and a weight-tied recurrent GNN.

Both read the same torch-geometric batches as the graph energy (energies/gnn.py), with the same
width (edge features of 2*width, GINEConv layers), and write one value per edge row from the
two endpoint embeddings and the edge's own features. The feed-forward one spends the same
compute on every graph (its answer is the same at every budget); the recurrent one applies one
shared GINE layer per iteration, so it can run more iterations at test time than in training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv

from irem.baselines.common import (
    budget_predictions,
    check_activation,
    check_sizes,
    iterates_loss,
    mean_loss,
)
from irem.networks.graph import AGGRS, check_choice, check_graph
from irem.networks.mlp import make_activation
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


def _graph_input(owner: str, edge_dim: int, task: Task, problem: Problem) -> Any:
    x = problem.x
    if problem.segment is None or not hasattr(x, "edge_index"):
        raise NotImplementedError(
            f"{owner} reads a graph batch with one answer row per edge; task '{task.name}' gives x of type "
            f"{type(x).__name__}."
        )
    try:
        check_graph(owner, x, edge_dim)
    except ValueError as err:
        raise ValueError(f"{err} (task '{task.name}', dims {task.dims()})") from None
    return x


def _edge_readout(hidden: int, y_dim: int, activation: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3 * hidden, hidden), make_activation(activation), nn.Linear(hidden, y_dim))


def _read_edges(readout: nn.Module, h: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
    return readout(torch.cat([h[edge_index[0]], h[edge_index[1]], e], dim=-1))


class GNNFeedForward(Predictor):
    """`depth` GINEConv layers of 2*width over the input graph, then a per-edge MLP readout."""

    def __init__(
        self,
        edge_dim: int,
        y_dim: int = 1,
        width: int = 64,
        depth: int = 3,
        aggr: str = "add",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_sizes("GNNFeedForward", edge_dim=edge_dim, y_dim=y_dim, width=width, depth=depth)
        check_choice("GNNFeedForward", "aggr", aggr, AGGRS)
        check_activation("GNNFeedForward", activation)
        self.edge_dim, self.y_dim = edge_dim, y_dim
        hidden = 2 * width
        self.edge_map = nn.Linear(edge_dim, hidden)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(1 if i == 0 else hidden, hidden)), edge_dim=hidden, aggr=aggr)
            for i in range(depth)
        )
        self.act = make_activation(activation)
        self.readout = _edge_readout(hidden, y_dim, activation)

    def forward(self, x: Any) -> Tensor:
        e = self.edge_map(x.edge_attr.float())
        h = x.x.float()
        for conv in self.convs:
            h = self.act(conv(h, x.edge_index, e))
        return _read_edges(self.readout, h, x.edge_index, e)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        y = self(_graph_input("GNNFeedForward", self.edge_dim, task, problem))
        return mean_loss(task, problem, y), {}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="GNNFeedForward.predict")
        with torch.no_grad():
            y = self(_graph_input("GNNFeedForward", self.edge_dim, task, problem))
        return Predictions(answers={str(b): y for b in wanted}, info={"steps_mean": {str(b): 1.0 for b in wanted}})


class GNNRecurrent(Predictor):
    """One shared GINEConv applied `steps` times; each iteration reads the last answer on every edge.

    Edge features are re-embedded from (input value, previous answer) each iteration, node states
    are updated by a GRU cell from the aggregated messages, and the answer after 0 iterations is
    the readout of the initial state (as the dense recurrent baseline does). Training unrolls
    `steps` iterations and backpropagates through all of them.
    """

    def __init__(
        self,
        edge_dim: int,
        y_dim: int = 1,
        width: int = 64,
        steps: int = 10,
        aggr: str = "add",
        activation: str = "relu",
        supervise_every_step: bool = False,
    ) -> None:
        super().__init__()
        check_sizes("GNNRecurrent", edge_dim=edge_dim, y_dim=y_dim, width=width, steps=steps)
        check_choice("GNNRecurrent", "aggr", aggr, AGGRS)
        check_activation("GNNRecurrent", activation)
        self.edge_dim, self.y_dim, self.steps = edge_dim, y_dim, steps
        self.supervise_every_step = bool(supervise_every_step)
        hidden = 2 * width
        self.hidden = hidden
        self.node_in = nn.Linear(1, hidden)
        self.edge_in = nn.Linear(edge_dim + y_dim, hidden)
        self.conv = GINEConv(nn.Sequential(nn.Linear(hidden, hidden), make_activation(activation)), aggr=aggr)
        self.cell = nn.GRUCell(hidden, hidden)
        self.readout = _edge_readout(hidden, y_dim, activation)

    @property
    def default_budget(self) -> int:
        return self.steps

    def iterate(self, x: Any, steps: int) -> Iterator[Tensor]:
        """The answer after 0, 1, ..., `steps` iterations, lazily."""
        attr = x.edge_attr.float()
        h = self.node_in(x.x.float())
        y = attr.new_zeros(attr.shape[0], self.y_dim)
        e = self.edge_in(torch.cat([attr, y], dim=-1))
        y = _read_edges(self.readout, h, x.edge_index, e)
        yield y
        for _ in range(steps):
            e = self.edge_in(torch.cat([attr, y], dim=-1))
            h = self.cell(self.conv(h, x.edge_index, e), h)
            y = _read_edges(self.readout, h, x.edge_index, e)
            yield y

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        ys = list(self.iterate(_graph_input("GNNRecurrent", self.edge_dim, task, problem), self.steps))[1:]
        return iterates_loss(task, problem, ys, None, self.supervise_every_step)

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="GNNRecurrent.predict")
        with torch.no_grad():
            x = _graph_input("GNNRecurrent", self.edge_dim, task, problem)
        return budget_predictions(self.iterate(x, wanted[-1]), wanted, None)
