"""Graph algorithmic reasoning: edge copy, all-pairs shortest path, connectivity, MST membership.

A problem is a torch-geometric Batch of graphs of mixed sizes; the answer is one value per edge
row of that batch, with `Problem.segment` the graph of each row, so solvers and metrics work per
instance. Edge tasks (edge copy, MST membership) answer on the input graph's own edges; pair
tasks (shortest path, connectivity) answer on every ordered pair i != j, so their batch is the
complete "pair graph" with the input graph written into its edge features (IREM's layout).

Input graphs come from a `family`: IREM's complete weighted graphs, Erdos-Renyi, k-nearest-
neighbour geometric graphs (IRED) and grids. The difficulty knob is the node count: training
draws 2..10 nodes per instance, `test` is fixed at 10 and the harder splits at 15, 20, 30, 50.

Ground truth is computed for the whole batch at once (scipy.sparse.csgraph on the block-diagonal
adjacency of the batch; batched Floyd-Warshall in torch for all pairs, since csgraph would return
a dense matrix over every node of the batch); the `*_networkx` functions are the readable
references that tests and `check` compare against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from torch import Tensor
from torch_geometric.data import Batch, Data

from irem.problem import Problem, per_instance_mean, per_instance_sum
from irem.task import Task, per_instance_level

FAMILIES = ("complete", "erdos_renyi", "knn", "grid")


# -- graph batches -----------------------------------------------------------------------------


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


def _lightest_pairs(counts: Tensor, edge_index: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One entry per undirected pair (self loops dropped): (pair keys a*n+b with a<b, lightest weight,
    the key of every edge row)."""
    n = int(counts.sum())
    src, dst = edge_index
    edge_key = torch.minimum(src, dst) * n + torch.maximum(src, dst)
    keep = src != dst
    key, inverse = torch.unique(edge_key[keep], return_inverse=True)
    w = torch.full((key.numel(),), math.inf, dtype=torch.float64)
    w = w.scatter_reduce(0, inverse, weight[keep].double(), "amin")
    return key, w, edge_key


def _block_adjacency(n: int, key: Tensor, w: Tensor) -> sp.csr_matrix:
    """The batch as one block-diagonal sparse matrix (upper triangle, one entry per pair)."""
    return sp.coo_matrix((w.numpy(), ((key // n).numpy(), (key % n).numpy())), shape=(n, n)).tocsr()


def components_scipy(counts: Tensor, edge_index: Tensor) -> Tensor:
    """Connected-component label of every node of the batch (undirected)."""
    validate_graph(counts, edge_index, where="connected components")
    n = int(counts.sum())
    adj = sp.coo_matrix(
        (np.ones(edge_index.shape[1]), (edge_index[0].numpy(), edge_index[1].numpy())), shape=(n, n)
    ).tocsr()
    _, labels = csgraph.connected_components(adj, directed=False)
    return torch.from_numpy(labels).long()


def mst_scipy(counts: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """Per edge: does it belong to the minimum spanning forest? (both directions of a tree edge)

    csgraph reads a stored zero as a missing edge, so weights are shifted by a constant first:
    every spanning forest of a component has the same number of edges, so the shift keeps the
    minimum one and zero-weight edges stay edges.
    """
    validate_graph(counts, edge_index, weight, where="minimum spanning tree")
    n = int(counts.sum())
    if edge_index.shape[1] == 0:
        return torch.zeros(0, dtype=torch.bool)
    shift = 1.0 - min(float(weight.min()), 0.0)
    key, w, edge_key = _lightest_pairs(counts, edge_index, weight.double() + shift)
    tree = csgraph.minimum_spanning_tree(_block_adjacency(n, key, w)).tocoo()
    tree_keys = torch.from_numpy(np.minimum(tree.row, tree.col).astype(np.int64) * n + np.maximum(tree.row, tree.col))
    in_tree = torch.isin(edge_key, tree_keys) & (edge_index[0] != edge_index[1])
    # with duplicate edges of a pair only its lightest copy is the tree edge
    lightest = w[torch.searchsorted(key, edge_key).clamp(max=max(key.numel() - 1, 0))]
    return in_tree & (weight.double() + shift == lightest)


def shortest_paths_dense(counts: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """All-pairs distances [B, n_max, n_max] (inf where unreachable), batched Floyd-Warshall in torch.

    The loop runs over the intermediate node k (n_max iterations), never over instances.
    """
    validate_graph(counts, edge_index, weight, where="shortest paths")
    if bool((weight < 0).any()):
        raise ValueError("shortest paths: edge weights must be >= 0 (got a negative weight).")
    b, n_max = counts.numel(), int(counts.max())
    ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(b), counts)
    local = torch.arange(int(counts.sum())) - ptr[graph_of]
    dist = torch.full((b, n_max, n_max), math.inf, dtype=torch.float64)
    src, dst = edge_index
    flat = graph_of[src] * n_max * n_max + local[src] * n_max + local[dst]
    dist = dist.view(-1).scatter_reduce(0, flat, weight.double(), "amin").view(b, n_max, n_max)
    dist.diagonal(dim1=1, dim2=2).zero_()
    for k in range(n_max):
        dist = torch.minimum(dist, dist[:, :, k : k + 1] + dist[:, k : k + 1, :])
    return dist


def pair_values(dense: Tensor, counts: Tensor, query: Tensor) -> Tensor:
    """Read a per-graph [B, n_max, n_max] table at global node pairs `query` [2, Q]."""
    ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    g = graph_of[query[0]]
    return dense[g, query[0] - ptr[g], query[1] - ptr[g]]


def _split_graphs(counts: Tensor, edge_index: Tensor, weight: Tensor) -> list[nx.Graph]:
    """One networkx graph per instance, nodes numbered locally (the readable reference path)."""
    ptr = _ptr(counts)
    graphs = [nx.Graph() for _ in range(counts.numel())]
    for g, n in zip(graphs, counts.tolist(), strict=True):
        g.add_nodes_from(range(n))
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    for s, d, w in zip(edge_index[0].tolist(), edge_index[1].tolist(), weight.double().tolist(), strict=True):
        gi = int(graph_of[s])
        u, v = s - int(ptr[gi]), d - int(ptr[gi])
        graph = graphs[gi]
        if u == v:
            continue
        if not graph.has_edge(u, v) or graph[u][v]["weight"] > w:
            graph.add_edge(u, v, weight=w)
    return graphs


def shortest_paths_networkx(counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
    """Distances at the query pairs with networkx's Dijkstra, graph by graph (inf if unreachable)."""
    ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    tables = [dict(nx.all_pairs_dijkstra_path_length(g)) for g in _split_graphs(counts, edge_index, weight)]
    out = []
    for s, d in zip(query[0].tolist(), query[1].tolist(), strict=True):
        gi = int(graph_of[s])
        out.append(tables[gi][s - int(ptr[gi])].get(d - int(ptr[gi]), math.inf))
    return torch.tensor(out, dtype=torch.float64)


def connected_networkx(counts: Tensor, edge_index: Tensor, query: Tensor) -> Tensor:
    """Per query pair: are the two nodes in one component? (networkx, graph by graph)"""
    ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    graphs = _split_graphs(counts, edge_index, torch.ones(edge_index.shape[1]))
    comp = []
    for g in graphs:
        label = {}
        for i, nodes in enumerate(nx.connected_components(g)):
            label.update(dict.fromkeys(nodes, i))
        comp.append(label)
    out = []
    for s, d in zip(query[0].tolist(), query[1].tolist(), strict=True):
        gi = int(graph_of[s])
        out.append(comp[gi][s - int(ptr[gi])] == comp[gi][d - int(ptr[gi])])
    return torch.tensor(out, dtype=torch.bool)


def mst_weight_networkx(counts: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """Total weight of each graph's minimum spanning forest (networkx)."""
    graphs = _split_graphs(counts, edge_index, weight)
    return torch.tensor([nx.minimum_spanning_tree(g).size(weight="weight") for g in graphs], dtype=torch.float64)


def mst_networkx(counts: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """Per edge: in networkx's minimum spanning forest? (unique when weights are distinct)"""
    ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    trees = [nx.minimum_spanning_tree(g) for g in _split_graphs(counts, edge_index, weight)]
    out = []
    for s, d, w in zip(edge_index[0].tolist(), edge_index[1].tolist(), weight.double().tolist(), strict=True):
        gi = int(graph_of[s])
        u, v = s - int(ptr[gi]), d - int(ptr[gi])
        t = trees[gi]
        out.append(u != v and t.has_edge(u, v) and t[u][v]["weight"] == w)
    return torch.tensor(out, dtype=torch.bool)


# -- generators ---------------------------------------------------------------------------------


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


def make_batch(counts: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Batch:
    """A torch-geometric Batch built in one go (no per-graph Data objects).

    Nodes carry a constant feature 1 (IREM's GraphEBM input); edges must be grouped by graph, as
    the generators here produce them. The slice bookkeeping is filled in so `index_select`,
    `to_data_list` and `Batch.from_data_list` work as on a collated batch.
    """
    counts = counts.long()
    node_ptr = _ptr(counts)
    graph_of = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    edge_counts = torch.bincount(graph_of[edge_index[0]], minlength=counts.numel())
    edge_ptr = _ptr(edge_counts)
    batch = Batch(
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


# -- tasks --------------------------------------------------------------------------------------


class GraphTask(Task):
    """Shared plumbing: node counts as difficulty, graph families, several harder splits.

    Subclasses say whether they answer per input edge (`pairs = False`) or per ordered pair, and
    provide `edge_features` (what the energy reads per row) and `truth` (the fast ground truth).
    """

    pairs: ClassVar[bool] = False
    binary: ClassVar[bool] = False
    level_label = "nodes"
    difficulty_label = "nodes"
    higher_is_better = frozenset({"accuracy", "balanced_accuracy", "within_5pct"})

    def __init__(
        self,
        family: str = "complete",
        min_nodes: int = 2,
        max_nodes: int = 10,
        test_nodes: int = 10,
        harder_nodes: Sequence[int] = (15, 20, 30, 50),
        degree: float = 4.0,
        edge_prob: float | None = None,
        test_size: int = 1000,
        val_size: int = 256,
        split_seed: int = 1234,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"{type(self).__name__}: unknown family '{family}'. Valid choices: {', '.join(FAMILIES)}.")
        if int(min_nodes) < 1:
            raise ValueError(f"{type(self).__name__}: min_nodes must be >= 1, got {min_nodes}.")
        if int(max_nodes) < int(min_nodes):
            raise ValueError(f"{type(self).__name__}: max_nodes ({max_nodes}) must be >= min_nodes ({min_nodes}).")
        harder = [int(n) for n in harder_nodes]
        if not harder or min(harder + [int(test_nodes)]) < 1:
            raise ValueError(
                f"{type(self).__name__}: test_nodes and harder_nodes must be >= 1 (and harder_nodes non-empty)."
            )
        if degree <= 0 or (edge_prob is not None and not 0 <= edge_prob <= 1):
            raise ValueError(
                f"{type(self).__name__}: need degree > 0 and edge_prob in [0, 1], got {degree}, {edge_prob}."
            )
        self.family = family
        self.min_nodes, self.max_nodes = int(min_nodes), int(max_nodes)
        self.test_nodes, self.harder_nodes = int(test_nodes), harder
        self.degree = float(degree)
        self.edge_prob = None if edge_prob is None else float(edge_prob)
        super().__init__(
            difficulty=self.test_nodes,
            harder_difficulty=harder[0],
            test_size=test_size,
            val_size=val_size,
            split_seed=split_seed,
        )

    # -- splits: node counts --------------------------------------------------------------------
    def split_levels(self) -> dict[str, float | None]:
        """train/val from the training range, test at `test_nodes`, one harder split per size."""
        levels: dict[str, float | None] = {"train": None, "val": None, "test": float(self.test_nodes)}
        levels["harder"] = float(self.harder_nodes[0])
        for n in self.harder_nodes[1:]:
            levels[f"harder_{n}"] = float(n)
        return levels

    def training_difficulty(self, n: int, generator: torch.Generator) -> Tensor:
        """A node count per instance, uniform on min_nodes..max_nodes."""
        return torch.randint(self.min_nodes, self.max_nodes + 1, (int(n),), generator=generator).float()

    def dims(self) -> dict[str, int]:
        return {"edge_dim": self.edge_dim, "y_dim": 1}

    @property
    def edge_dim(self) -> int:
        return 1

    # -- generation -----------------------------------------------------------------------------
    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        level = per_instance_level(difficulty, n)
        counts = level.round().long()
        if bool((counts < 1).any()) or bool((level != counts.float()).any()):
            raise ValueError(f"{self.name}: difficulty is a node count, a whole number >= 1; got {level.tolist()}.")
        edge_index, weight = random_graphs(self.family, counts, generator, self.degree, self.edge_prob)
        query = complete_pairs(counts)[0] if self.pairs else edge_index
        attr = self.edge_features(counts, edge_index, weight, query)
        target = self.truth(counts, edge_index, weight, query).float().unsqueeze(1)
        x = make_batch(counts, query, attr)
        return Problem(x=x, target=target, segment=edge_segment(x), difficulty=level, num_instances=int(n))

    def edge_features(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        """What the model reads on each row: the edge weight (edge tasks)."""
        return weight.float().unsqueeze(1)

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        raise NotImplementedError

    def input_graph(self, x: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(counts, edge_index, weight) of the input graph, recovered from a problem's x alone."""
        return graph_counts(x), x.edge_index, x.edge_attr[:, 0]

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (int(problem.x.edge_index.shape[1]), 1)

    # -- metrics ---------------------------------------------------------------------------------
    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        out = {"mse": self.loss(problem, y.detach())}
        if self.binary:
            out.update(binary_metrics(y.detach(), problem.target, problem.segment, problem.num_instances))
        return out


def binary_metrics(y: Tensor, target: Tensor, segment: Tensor, n: int) -> dict[str, Tensor]:
    """Per-instance accuracy and balanced accuracy (mean recall over the classes present) at 0.5."""
    pred, truth = y > 0.5, target > 0.5
    correct = (pred == truth).float()
    acc = per_instance_mean(correct, segment, n)
    pos, neg = truth.float(), (~truth).float()
    n_pos, n_neg = per_instance_sum(pos, segment, n), per_instance_sum(neg, segment, n)
    tpr = per_instance_sum(correct * pos, segment, n) / n_pos.clamp_min(1)
    tnr = per_instance_sum(correct * neg, segment, n) / n_neg.clamp_min(1)
    classes = (n_pos > 0).float() + (n_neg > 0).float()
    balanced = (tpr * (n_pos > 0) + tnr * (n_neg > 0)) / classes.clamp_min(1)
    return {"accuracy": acc, "balanced_accuracy": torch.where(classes > 0, balanced, torch.ones_like(balanced))}


def rows_close(y: Tensor, ref: Tensor, segment: Tensor, n: int, tol: float) -> Tensor:
    """Per instance: every row within tol * (1 + |ref|)."""
    bad = ((y.double().flatten() - ref.double()).abs() > tol * (1 + ref.double().abs())).double()
    return per_instance_sum(bad, segment, n) == 0


class EdgeCopy(GraphTask):
    """Sanity task: output each edge's input value (IREM's edge copy)."""

    name = "graph_edge_copy"

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        return weight

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        return rows_close(y, problem.x.edge_attr[:, 0], problem.segment, problem.num_instances, tol)


class ShortestPath(GraphTask):
    """All-pairs shortest path distances, one per ordered pair i != j.

    On complete graphs (IREM) a row reads the pair's weight; on sparse families it reads
    [weight or 0, 1 if the pair is an edge]. Pairs with no path get `unreachable` as target.
    Extra metric: the fraction of pairs within `tolerance` (5%) of the true distance.
    """

    name = "graph_shortest_path"
    pairs = True

    def __init__(self, unreachable: float = -1.0, tolerance: float = 0.05, **kwargs) -> None:
        self.unreachable = float(unreachable)
        self.tolerance = float(tolerance)
        super().__init__(**kwargs)

    @property
    def edge_dim(self) -> int:
        return 1 if self.family == "complete" else 2

    def edge_features(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        total = int(counts.sum())
        keys = edge_index[0] * total + edge_index[1]
        order = torch.argsort(keys)
        q = query[0] * total + query[1]
        pos = torch.searchsorted(keys[order], q).clamp(max=max(keys.numel() - 1, 0))
        present = keys[order][pos] == q if keys.numel() else torch.zeros_like(q, dtype=torch.bool)
        w = torch.where(present, weight[order][pos] if keys.numel() else q.float(), torch.zeros(()))
        if self.family == "complete":
            return w.float().unsqueeze(1)
        return torch.stack([w.float(), present.float()], dim=1)

    def input_graph(self, x: Batch) -> tuple[Tensor, Tensor, Tensor]:
        present = (
            torch.ones(x.edge_index.shape[1], dtype=torch.bool)
            if self.family == "complete"
            else x.edge_attr[:, 1] > 0.5
        )
        return graph_counts(x), x.edge_index[:, present], x.edge_attr[present, 0]

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        d = pair_values(shortest_paths_dense(counts, edge_index, weight), counts, query)
        return torch.where(torch.isinf(d), torch.full_like(d, self.unreachable), d)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        counts, edge_index, weight = self.input_graph(problem.x)
        ref = shortest_paths_networkx(counts, edge_index, weight, problem.x.edge_index)
        ref = torch.where(torch.isinf(ref), torch.full_like(ref, self.unreachable), ref)
        return rows_close(y, ref, problem.segment, problem.num_instances, tol)

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        out = super().metrics(problem, y)
        t = problem.target
        within = ((y.detach() - t).abs() <= self.tolerance * t.abs() + 1e-6).float()
        out["within_5pct"] = per_instance_mean(within, problem.segment, problem.num_instances)
        return out


class Connectivity(GraphTask):
    """Per ordered pair: 1 if the two nodes share a connected component (IREM: edges iff U > 0.95).

    A row reads 1 if the pair is an edge of the input graph, else 0.
    """

    name = "graph_connectivity"
    pairs = True
    binary = True

    def edge_features(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        total = int(counts.sum())
        present = torch.isin(query[0] * total + query[1], edge_index[0] * total + edge_index[1])
        return present.float().unsqueeze(1)

    def input_graph(self, x: Batch) -> tuple[Tensor, Tensor, Tensor]:
        present = x.edge_attr[:, 0] > 0.5
        return graph_counts(x), x.edge_index[:, present], torch.ones(int(present.sum()))

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        labels = components_scipy(counts, edge_index)
        return labels[query[0]] == labels[query[1]]

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        counts, edge_index, _ = self.input_graph(problem.x)
        ref = connected_networkx(counts, edge_index, problem.x.edge_index).double()
        return rows_close(y, ref, problem.segment, problem.num_instances, tol)


class MSTMembership(GraphTask):
    """Per input edge: 1 if it is in the minimum spanning forest (both directions of a tree edge).

    Defaults to sparse k-nearest-neighbour graphs (IRED's geometric family), where the answer is
    per edge and scales to large graphs.
    """

    name = "graph_mst"
    binary = True

    def __init__(self, family: str = "knn", **kwargs) -> None:
        super().__init__(family=family, **kwargs)

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        return mst_scipy(counts, edge_index, weight)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """y picks a spanning forest of minimum weight (networkx), judged without the target.

        Weight-based, so any minimum forest passes when weights tie.
        """
        counts, edge_index, weight = self.input_graph(problem.x)
        n, seg = problem.num_instances, problem.segment
        yf = y.double().flatten()
        binary = per_instance_sum(((yf - yf.round()).abs() > tol).double(), seg, n) == 0
        chosen = (yf > 0.5) & (edge_index[0] != edge_index[1])
        sub = edge_index[:, chosen]
        # symmetric choice, a forest (edges = nodes - components), spanning the same components
        total = int(counts.sum())
        keys = edge_index[0] * total + edge_index[1]
        rev = sub[1] * total + sub[0]
        symmetric = per_instance_sum((~torch.isin(rev, keys[chosen])).double(), seg[chosen], n) == 0
        label_in, label_sub = components_scipy(counts, edge_index), components_scipy(counts, sub)
        graph_of = torch.repeat_interleave(torch.arange(n), counts)
        comps_in = torch.zeros(n).index_add_(0, graph_of, torch.ones(total) / torch.bincount(label_in)[label_in])
        comps_sub = torch.zeros(n).index_add_(0, graph_of, torch.ones(total) / torch.bincount(label_sub)[label_sub])
        same = (comps_in - comps_sub).abs() < 1e-6
        forest = (per_instance_sum(torch.ones(sub.shape[1]), seg[chosen], n) / 2 - (counts - comps_sub)).abs() < 1e-6
        w = per_instance_sum(weight.double()[chosen], seg[chosen], n) / 2
        best = mst_weight_networkx(counts, edge_index, weight)
        optimal = (w - best).abs() <= tol * (1 + best.abs())
        return binary & symmetric & same & forest & optimal
