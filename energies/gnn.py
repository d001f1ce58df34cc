"""IREM's graph energy: message passing over (graph input, candidate edge values) -> one scalar per graph.

GraphEBM in the released IREM code: the input value of each edge and the candidate answer on it
are each embedded to `width` (64) and concatenated into a 2*width edge feature; nodes start from
the constant feature 1; `depth` (3) GINEConv layers (torch-geometric) pass messages, a global
pool (max) reads each graph out and an MLP maps it to a scalar. With the defaults that is 83,330
parameters (~83k in the paper). Width, depth, the message aggregation and the pooling are
configurable.

`landscapes` > 0 makes it a family of IRED's annealed landscapes (ired/landscapes.py): `step` is
then the landscape index (one, or one per graph), embedded into a gain and a bias on the node
features after every message-passing layer. Off by default, so IREM checkpoints are unchanged.

The input edges' embedding depends on x alone, so `prepare` computes it (and validates the graph)
once per descent; the solver hands it back at every step, as it does for MLPEnergy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, global_add_pool, global_max_pool, global_mean_pool

from irem.energy import EnergyFunction
from irem.ired.landscapes import LandscapeEmbedding
from irem.networks.graph import AGGRS, check_choice, check_graph
from irem.networks.mlp import make_activation

POOLS = {"max": global_max_pool, "mean": global_mean_pool, "add": global_add_pool, "sum": global_add_pool}


def edge_values(owner: str, y: Tensor, num_edges: int, y_dim: int) -> Tensor:
    """A candidate as [num_edges, y_dim] ([num_edges] is read as one value per edge)."""
    if y.dim() == 1 and y_dim == 1:
        y = y.unsqueeze(1)
    if y.dim() != 2 or y.shape != (num_edges, y_dim):
        raise ValueError(
            f"{owner}(y_dim={y_dim}): the candidate must have one row per edge, shape ({num_edges}, {y_dim}); "
            f"got {tuple(y.shape)}."
        )
    return y


@dataclass(frozen=True)
class PreparedGraph:
    """A validated batch with its edge embedding (see `GNNEnergy.prepare`)."""

    x: Any
    edge_embedding: Tensor
    batch: Tensor
    num_graphs: int
    owner: int


class GNNEnergy(EnergyFunction):
    def __init__(
        self,
        edge_dim: int = 1,
        y_dim: int = 1,
        width: int = 64,
        depth: int = 3,
        aggr: str = "add",
        pool: str = "max",
        activation: str = "relu",
        landscapes: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(landscapes, bool) or not isinstance(landscapes, int) or landscapes < 0:
            raise ValueError(f"GNNEnergy: landscapes must be a whole number >= 0, got {landscapes!r}.")
        for key, value in (("edge_dim", edge_dim), ("y_dim", y_dim), ("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GNNEnergy: {key} must be an integer >= 1, got {value!r}.")
        check_choice("GNNEnergy", "aggr", aggr, AGGRS)
        check_choice("GNNEnergy", "pool", pool, POOLS)
        make_activation(activation)
        self.edge_dim, self.y_dim = edge_dim, y_dim
        hidden = 2 * width
        self.edge_map = nn.Linear(edge_dim, width)
        self.y_map = nn.Linear(y_dim, width)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(1 if i == 0 else hidden, hidden)), edge_dim=hidden, aggr=aggr)
            for i in range(depth)
        )
        self.act = make_activation(activation)
        self.pool = POOLS[pool]
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), make_activation(activation), nn.Linear(hidden, 1))
        self.landscapes = int(landscapes)
        if self.landscapes:
            self.landscape = LandscapeEmbedding(self.landscapes, [hidden] * depth)

    def prepare(self, x: Any) -> PreparedGraph:
        """Validate the graph once and embed its input edge values (they do not change in a descent)."""
        num_graphs, batch = check_graph("GNNEnergy", x, self.edge_dim)
        return PreparedGraph(x, self.edge_map(x.edge_attr.float()), batch, num_graphs, id(self))

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:
        if not isinstance(x, PreparedGraph) or x.owner != id(self):
            x = self.prepare(x.x if isinstance(x, PreparedGraph) else x)
        graph = x.x
        y = edge_values("GNNEnergy", y, graph.edge_index.shape[1], self.y_dim)
        e = torch.cat([x.edge_embedding, self.y_map(y)], dim=-1)
        h = graph.x.float() if getattr(graph, "x", None) is not None and graph.x.shape[-1:] == (1,) else None
        if h is None:
            h = e.new_ones(graph.num_nodes, 1)
        films = self.landscape(step, x.num_graphs, h.device) if self.landscapes else None
        for i, conv in enumerate(self.convs):
            h = conv(h, graph.edge_index, e)
            if films is not None:  # per graph, onto its nodes
                gain, bias = films[i]
                h = h * (1 + gain[x.batch]) + bias[x.batch]
            if i < len(self.convs) - 1:
                h = self.act(h)
        pooled = self.pool(h, x.batch, x.num_graphs)
        return self.readout(pooled).squeeze(-1)
