"""Ground truth of the graph tasks, for a whole batch at once, and the readable references.

The fast path works on the block-diagonal adjacency of the batch (scipy.sparse.csgraph) and on a
batched Floyd-Warshall in torch for all pairs (csgraph would return a dense matrix over every
node of the batch). The `*_networkx` functions compute the same answers graph by graph with
networkx; tests and the tasks' `check` compare against them.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph
from torch import Tensor

from irem.tasks.graph_batch import _ptr, validate_graph


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
