"""Graph algorithmic reasoning: edge copy, all-pairs shortest path, connectivity, MST membership.

A problem is a `GraphBatch` (tasks/graph_batch.py) of graphs of mixed sizes; the answer is one
value per edge row of that batch, with `Problem.segment` the graph of each row, so solvers and
metrics work per instance. Edge tasks (edge copy, MST membership) answer on the input graph's own
edges; pair tasks (shortest path, connectivity) answer on every ordered pair i != j, so their batch
is the complete "pair graph" with the input graph written into its edge features (IREM's layout).

The difficulty knob is the node count: training draws 2..10 nodes per instance, `test` is fixed
at 10 and the harder splits at 15, 20, 30, 50. Ground truth comes from tasks/graph_truth.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Batch

from irem.problem import Problem, per_instance_mean, per_instance_sum
from irem.task import Task, per_instance_level
from irem.tasks.graph_batch import (
    FAMILIES,
    complete_pairs,
    edge_segment,
    graph_counts,
    make_batch,
    random_graphs,
    validate_graph,
)
from irem.tasks.graph_truth import (
    components_scipy,
    connected_networkx,
    mst_scipy,
    mst_weight_networkx,
    pair_values,
    shortest_paths_dense,
    shortest_paths_networkx,
)


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

    def check_input(self, problem: Problem, y: Tensor | None = None) -> None:
        """Refuse a corrupted problem (or an answer of the wrong shape) with what is wrong.

        `check` judges answers against references recomputed from x; on a corrupted x (an edge
        to a node outside its graph, NaN features) that reference silently answers something else,
        and the check passed answers it should not. A NaN answer is not corrupted input: the check
        judges it wrong.
        """
        where = f"{type(self).__name__}.check"
        x = problem.x
        edge_index, attr = getattr(x, "edge_index", None), getattr(x, "edge_attr", None)
        if not isinstance(x, Batch) or not isinstance(edge_index, Tensor) or not isinstance(attr, Tensor):
            raise ValueError(
                f"{where}: x must be a graph batch with edge_index and edge_attr (tasks/graph_batch.py "
                f"make_batch, as generate() builds it), got {type(x).__name__}."
            )
        counts = graph_counts(x)
        validate_graph(counts, edge_index, where=where)  # shape, dtype, ids in range, edges inside a graph
        rows = int(edge_index.shape[1])
        if attr.dim() != 2 or tuple(attr.shape) != (rows, self.edge_dim):
            raise ValueError(
                f"{where}: edge_attr has shape {tuple(attr.shape)}; this task reads [num_edges, edge_dim] = "
                f"[{rows}, {self.edge_dim}]."
            )
        finite = torch.isfinite(attr).all(1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten()
            raise ValueError(
                f"{where}: edge_attr holds NaN or inf in {bad.numel()} of {rows} edge rows (first: row "
                f"{int(bad[0])}); edge features must be finite."
            )
        segment = problem.segment
        if segment is None or tuple(segment.shape) != (rows,):
            got = None if segment is None else tuple(segment.shape)
            raise ValueError(
                f"{where}: problem.segment must give the graph of each of the {rows} edge rows, got {got}."
            )
        if problem.num_instances != counts.numel():
            raise ValueError(
                f"{where}: problem.num_instances is {problem.num_instances} but x holds {counts.numel()} graphs."
            )
        if y is not None and (y.dim() == 0 or y.shape[0] != rows or y.numel() != rows):
            raise ValueError(
                f"{where}: the answer has shape {tuple(y.shape)}; this problem needs one value per edge row, "
                f"shape ({rows}, 1) (answer_shape)."
            )

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
    """Per instance: every row within tol * (1 + |ref|); a NaN row is not within anything."""
    close = (y.double().flatten() - ref.double()).abs() <= tol * (1 + ref.double().abs())
    bad = (~close).double()
    return per_instance_sum(bad, segment, n) == 0


class EdgeCopy(GraphTask):
    """Sanity task: output each edge's input value (IREM's edge copy)."""

    name = "graph_edge_copy"

    def truth(self, counts: Tensor, edge_index: Tensor, weight: Tensor, query: Tensor) -> Tensor:
        validate_graph(counts, edge_index, weight, where="edge copy")  # as the other tasks' truths do
        return weight

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        self.check_input(problem, y)
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
        self.check_input(problem, y)
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
        self.check_input(problem, y)
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
        self.check_input(problem, y)
        counts, edge_index, weight = self.input_graph(problem.x)
        n, seg = problem.num_instances, problem.segment
        yf = y.double().flatten()
        binary = per_instance_sum((~((yf - yf.round()).abs() <= tol)).double(), seg, n) == 0  # NaN: not binary
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
