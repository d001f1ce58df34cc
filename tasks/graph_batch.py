"""Graph batches: the input type of the graph tasks, the random graph families, and batch building.

A problem's x is a `GraphBatch`: a torch-geometric Batch of graphs of mixed sizes that also follows
the core's instance protocol (irem.problem.InstanceInput: pick, repeat, join and move whole graphs;
ContinuousInput: its edge values), so solvers and evaluation batch graphs without knowing what
they are. Input graphs come from a family: IREM's complete weighted graphs, Erdos-Renyi,
k-nearest-neighbour geometric graphs (IRED) and grids, all drawn for a whole batch at once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from scipy.spatial import cKDTree
from torch import Tensor
from torch_geometric.data import Batch, Data

FAMILIES = ("complete", "erdos_renyi", "knn", "grid")


class GraphBatch(Batch):
    """A torch-geometric Batch whose instances are its graphs.

    It is built by `make_batch` (or `GraphBatch.from_data_list`), reads like any Batch for the
    energies, and implements the instance protocol the core relies on: selecting graphs
    re-collates them into a new GraphBatch on the same device.
    """

    @property
    def num_instances(self) -> int:
        return int(self.num_graphs)

    def can_select(self, index: Tensor) -> bool:
        return True

    def select_instances(self, index: Tensor) -> GraphBatch:
        index = torch.as_tensor(index, dtype=torch.long).flatten().cpu()
        return GraphBatch.from_data_list(self.index_select(index)).to(self.edge_index.device)

    def cat_instances(self, others: Sequence[GraphBatch]) -> GraphBatch:
        graphs = [g for b in (self, *others) for g in b.to_data_list()]
        return GraphBatch.from_data_list(graphs).to(self.edge_index.device)

    def input_values(self) -> Tensor:
        """The edge values: what composition feeds inner answers into, and what a descent in x moves."""
        return self.edge_attr

    def with_input_values(self, values: Tensor) -> GraphBatch:
        """The same graphs (shared structure tensors) with other edge values."""
        out = copy.copy(self)
        out.edge_attr = values.reshape(self.edge_attr.shape[0], -1)
        return out


def _ptr(counts: Tensor) -> Tensor:
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def validate_graph(counts: Tensor, edge_index: Tensor, weight: Tensor | None = None, where: str = "graph") -> None:
    """Clear errors for malformed input: empty graphs, edges out of range or across graphs, NaN weights.

    `counts` is the node count of each graph, `edge_index` [2, E] global node ids of the batch.
    """
    if counts.numel() == 0:
        raise ValueError(f"{where}: the batch holds no graphs.")
    if bool((counts < 1).any()):
        empty = torch.nonzero(counts < 1).flatten().tolist()[:5]
        raise ValueError(f"{where}: graph(s) {empty} have no nodes; every graph needs at least one node.")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{where}: edge_index must have shape [2, num_edges], got {tuple(edge_index.shape)}.")
    if edge_index.dtype not in (torch.long, torch.int32, torch.int64):
        raise ValueError(f"{where}: edge_index must hold integer node ids, got dtype {edge_index.dtype}.")
    total = int(counts.sum())
    if edge_index.numel():
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= total:
            raise ValueError(
                f"{where}: edge index out of range: node ids must lie in [0, {total - 1}] "
                f"(the batch has {total} nodes), got ids in [{lo}, {hi}]."
            )
        graph_of = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
        if bool((graph_of[edge_index[0]] != graph_of[edge_index[1]]).any()):
            raise ValueError(f"{where}: an edge joins two different graphs of the batch; edges must stay in one graph.")
    if weight is not None:
        if weight.shape[0] != edge_index.shape[1]:
            raise ValueError(
                f"{where}: {weight.shape[0]} edge weights for {edge_index.shape[1]} edges; give one per edge."
            )
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"{where}: edge weights contain NaN or inf; weights must be finite.")


# -- families -----------------------------------------------------------------------------------


def complete_pairs(counts: Tensor) -> tuple[Tensor, Tensor]:
    """Every ordered pair i != j of every graph, row-major per graph: (edge_index [2, P], reverse [P]).

    `reverse[p]` is the position of pair (j, i), so a per-pair draw is made symmetric in one gather.
    """
    counts = counts.long()
    pairs = counts * (counts - 1)
    pair_ptr, node_ptr = _ptr(pairs), _ptr(counts)
    graph = torch.repeat_interleave(torch.arange(counts.numel()), pairs)
    local = torch.arange(int(pairs.sum())) - pair_ptr[graph]
    n1 = (counts[graph] - 1).clamp_min(1)
    i = local // n1
    jj = local % n1
    j = jj + (jj >= i).long()
    edge_index = torch.stack([node_ptr[graph] + i, node_ptr[graph] + j])
    reverse = pair_ptr[graph] + j * n1 + i - (i > j).long()
    return edge_index, reverse


def symmetric_values(values: Tensor, edge_index: Tensor, reverse: Tensor) -> Tensor:
    return torch.where(edge_index[0] < edge_index[1], values, values[reverse])


def _undirected(a: Tensor, b: Tensor, w: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """Both directions of undirected edges (a, b), sorted by (source, target) so graphs stay contiguous."""
    src, dst, weight = torch.cat([a, b]), torch.cat([b, a]), torch.cat([w, w])
    order = torch.argsort(src * total + dst)
    return torch.stack([src[order], dst[order]]), weight[order]


def random_graphs(
    family: str, counts: Tensor, generator: torch.Generator, degree: float = 4.0, edge_prob: float | None = None
) -> tuple[Tensor, Tensor]:
    """Input graphs of a family for node counts `counts`: (edge_index [2, E] global, weight [E]).

    Undirected, both directions stored with one weight, no self loops; everything drawn for the
    whole batch at once. Weights are U(0, 1) except for knn, where they are Euclidean distances.
    """
    counts = counts.long()
    total = int(counts.sum())
    if family in ("complete", "erdos_renyi"):
        edge_index, reverse = complete_pairs(counts)
        weight = symmetric_values(torch.rand(edge_index.shape[1], generator=generator), edge_index, reverse)
        if family == "complete":
            return edge_index, weight
        keep_draw = symmetric_values(torch.rand(edge_index.shape[1], generator=generator), edge_index, reverse)
        graph = torch.repeat_interleave(torch.arange(counts.numel()), counts)[edge_index[0]]
        if edge_prob is None:
            p = (degree / (counts.double() - 1).clamp_min(1)).clamp(max=1.0)
        else:
            p = torch.full((counts.numel(),), float(edge_prob), dtype=torch.float64)
        keep = keep_draw.double() < p[graph]
        return edge_index[:, keep], weight[keep]
    if family == "grid":
        ptr = _ptr(counts)
        graph = torch.repeat_interleave(torch.arange(counts.numel()), counts)
        v = torch.arange(total) - ptr[graph]
        n = counts[graph]
        cols = torch.ceil(torch.sqrt(counts.double())).long()[graph]
        right = ((v % cols) != cols - 1) & (v + 1 < n)
        down = v + cols < n
        a = torch.cat([torch.arange(total)[right], torch.arange(total)[down]])
        b = torch.cat([a[: int(right.sum())] + 1, a[int(right.sum()) :] + cols[down]])
        return _undirected(a, b, torch.rand(a.numel(), generator=generator), total)
    if family == "knn":
        k = max(int(round(degree)), 1)
        points = torch.rand(total, 2, generator=generator, dtype=torch.float64)
        graph = torch.repeat_interleave(torch.arange(counts.numel()), counts)
        # graphs side by side, 3 apart: nearer than any node of another graph (diameter sqrt 2)
        shifted = points.numpy().copy()
        shifted[:, 0] += 3.0 * graph.numpy()
        dist, nbr = cKDTree(shifted).query(shifted, k=min(k + 1, total))
        dist, nbr = torch.from_numpy(dist).reshape(total, -1), torch.from_numpy(nbr).reshape(total, -1).long()
        src = torch.arange(total).unsqueeze(1).expand_as(nbr)
        ok = (nbr != src) & (nbr < total)
        ok &= graph[nbr.clamp(max=total - 1)] == graph.unsqueeze(1)
        a, b, w = src[ok], nbr[ok], dist[ok]
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        key, first = torch.unique(lo * total + hi, return_inverse=True)
        w_pair = torch.zeros(key.numel(), dtype=torch.float64).scatter_(0, first, w)
        return _undirected(key // total, key % total, w_pair.float(), total)
    raise ValueError(f"Unknown graph family '{family}'. Valid choices: {', '.join(FAMILIES)}.")


# -- batches ------------------------------------------------------------------------------------


def make_batch(counts: Tensor, edge_index: Tensor, edge_attr: Tensor) -> GraphBatch:
    """A GraphBatch built in one go (no per-graph Data objects).

    Nodes carry a constant feature 1 (IREM's GraphEBM input); edges must be grouped by graph, as
    the generators here produce them. The slice bookkeeping is filled in so `index_select`,
    `to_data_list` and `Batch.from_data_list` work as on a collated batch.
    """
    counts = counts.long()
    node_ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    edge_counts = torch.bincount(graph_of[edge_index[0]], minlength=counts.numel())
    edge_ptr = _ptr(edge_counts)
    batch = GraphBatch(
        _base_cls=Data,
        x=torch.ones(int(node_ptr[-1]), 1),
        edge_index=edge_index,
        edge_attr=edge_attr,
        batch=graph_of,
        ptr=node_ptr,
    )
    b = counts.numel()
    batch._slice_dict = {"x": node_ptr, "edge_index": edge_ptr, "edge_attr": edge_ptr}
    batch._inc_dict = {"x": torch.zeros(b, dtype=torch.long), "edge_index": node_ptr[:-1], "edge_attr": torch.zeros(b)}
    batch._num_graphs = b
    return batch


def graph_counts(x: Batch) -> Tensor:
    """Node count of each graph of a batch."""
    return torch.bincount(x.batch, minlength=x.num_graphs) if x.batch is not None else torch.tensor([x.num_nodes])


def edge_segment(x: Batch) -> Tensor:
    """The graph of each edge row."""
    if x.batch is None:
        return torch.zeros(x.edge_index.shape[1], dtype=torch.long)
    return x.batch[x.edge_index[0]]
