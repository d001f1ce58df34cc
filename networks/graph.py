"""Input checks and choices shared by the graph energy (energies/gnn.py) and the graph baselines."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

AGGRS = ("add", "sum", "mean", "max", "min")


def check_choice(owner: str, key: str, value: str, valid: Any) -> None:
    if value not in valid:
        raise ValueError(f"{owner}: unknown {key} '{value}'. Valid choices: {', '.join(sorted(valid))}.")


def check_graph(owner: str, x: Any, edge_dim: int) -> tuple[int, Tensor]:
    """Validate a torch-geometric batch for a graph model; returns (num_graphs, batch vector).

    Each failure names the problem: not a graph, empty graph, edge index out of range, edge
    features of the wrong width or count, NaN/inf features.
    """
    if not hasattr(x, "edge_index") or not hasattr(x, "edge_attr"):
        raise ValueError(
            f"{owner} reads a torch-geometric Batch/Data with edge_index and edge_attr; got {type(x).__name__}."
        )
    num_nodes = int(x.num_nodes or 0)
    if num_nodes == 0:
        raise ValueError(f"{owner}: empty graph: the input has no nodes.")
    edge_index, edge_attr = x.edge_index, x.edge_attr
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{owner}: edge_index must have shape [2, num_edges], got {tuple(edge_index.shape)}.")
    if edge_index.numel():
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"{owner}: edge index out of range: node ids must lie in [0, {num_nodes - 1}], got [{lo}, {hi}]."
            )
    if edge_attr is None or edge_attr.dim() != 2 or edge_attr.shape != (edge_index.shape[1], edge_dim):
        got = None if edge_attr is None else tuple(edge_attr.shape)
        raise ValueError(
            f"{owner}(edge_dim={edge_dim}): edge_attr must have shape [num_edges={edge_index.shape[1]}, {edge_dim}], "
            f"got {got}; build it with the task's dims."
        )
    if not bool(torch.isfinite(edge_attr).all()):
        raise ValueError(f"{owner}: edge_attr contains NaN or inf; edge weights must be finite.")
    batch = getattr(x, "batch", None)
    if batch is None:
        return 1, torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    num_graphs = int(x.num_graphs)
    if bool((torch.bincount(batch, minlength=num_graphs) == 0).any()):
        raise ValueError(f"{owner}: empty graph: a graph of the batch has no nodes.")
    return num_graphs, batch
