"""tasks/graph.py: ground truth against networkx, edge cases, batches of mixed sizes, bad input.

The generic tests in test_tasks.py already run every graph task config (determinism, fixed splits,
`check` accepting the target); here the fast batched ground truth (scipy.sparse.csgraph, batched
Floyd-Warshall) is compared with the networkx reference on random graphs of every family and on
hand-made edge cases, and every graph task must give each instance of a mixed batch the same
target, metrics, energy and descent as that instance alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from irem.cli import CONFIG_DIR
from irem.energies.gnn import GNNEnergy
from irem.problem import Problem
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.graph import Connectivity, EdgeCopy, GraphTask, MSTMembership, ShortestPath, binary_metrics
from irem.tasks.graph_batch import FAMILIES, GraphBatch, complete_pairs, make_batch, random_graphs, validate_graph
from irem.tasks.graph_truth import (
    components_scipy,
    connected_networkx,
    mst_networkx,
    mst_scipy,
    mst_weight_networkx,
    shortest_paths_dense,
    shortest_paths_networkx,
)
from irem.tasks.graph_truth import pair_values as pairs_values

GRAPH_TASKS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("graph_*.yaml"))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def edge_cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One node with a self loop; three nodes, no edges; two components joined by zero weights;
    five nodes with a self loop and a duplicate edge; two nodes joined by weight 0."""
    counts = torch.tensor([1, 3, 4, 5, 2])
    # global ids: g0: 0 | g1: 1-3 | g2: 4-7 | g3: 8-12 | g4: 13-14
    und = [(0, 0, 0.3), (4, 5, 0.0), (6, 7, 0.0), (8, 8, 0.5), (8, 9, 0.2), (9, 10, 0.7), (10, 11, 0.1)]
    und += [(11, 12, 0.4), (8, 12, 0.9), (9, 10, 0.6), (13, 14, 0.0)]
    src = [a for a, b, _ in und] + [b for a, b, _ in und]
    dst = [b for a, b, _ in und] + [a for a, b, _ in und]
    w = [x for *_, x in und] * 2
    return counts, torch.tensor([src, dst]), torch.tensor(w)


def random_family_graphs(family: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = torch.randint(1, 13, (12,), generator=gen(seed))
    edge_index, weight = random_graphs(family, counts, gen(seed + 1), degree=3.0)
    return counts, edge_index, weight


CASES = [("edge_cases", None)] + [(f, s) for f in FAMILIES for s in (0, 1)]


def case(name: str, seed: int | None):
    return edge_cases() if seed is None else random_family_graphs(name, seed)


# -- ground truth: fast batched path == networkx reference --------------------------------------


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_shortest_paths_agree_with_networkx(name: str, seed: int | None) -> None:
    counts, edge_index, weight = case(name, seed)
    pairs = complete_pairs(counts)[0]
    fast = pairs_values(shortest_paths_dense(counts, edge_index, weight), counts, pairs)
    ref = shortest_paths_networkx(counts, edge_index, weight, pairs)
    assert torch.equal(torch.isinf(fast), torch.isinf(ref))
    finite = torch.isfinite(ref)
    torch.testing.assert_close(fast[finite], ref[finite], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_connectivity_agrees_with_networkx(name: str, seed: int | None) -> None:
    counts, edge_index, _ = case(name, seed)
    pairs = complete_pairs(counts)[0]
    labels = components_scipy(counts, edge_index)
    assert torch.equal(labels[pairs[0]] == labels[pairs[1]], connected_networkx(counts, edge_index, pairs))


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_mst_agrees_with_networkx(name: str, seed: int | None) -> None:
    counts, edge_index, weight = case(name, seed)
    fast = mst_scipy(counts, edge_index, weight)
    n = counts.numel()
    graph_of = torch.repeat_interleave(torch.arange(n), counts)[edge_index[0]]
    chosen_weight = torch.zeros(n, dtype=torch.float64).index_add_(0, graph_of, weight.double() * fast) / 2
    torch.testing.assert_close(chosen_weight, mst_weight_networkx(counts, edge_index, weight))
    if seed is not None:  # continuous random weights: the forest is unique, so the edges agree too
        assert torch.equal(fast, mst_networkx(counts, edge_index, weight))


def test_edge_cases_by_hand() -> None:
    counts, edge_index, weight = edge_cases()
    dist = shortest_paths_dense(counts, edge_index, weight)
    assert dist[0, 0, 0] == 0  # one node with a self loop: distance to itself is 0
    assert torch.isinf(dist[1, 0, 1]) and dist[1, 1, 1] == 0  # no edges
    assert dist[2, 0, 1] == 0 and torch.isinf(dist[2, 0, 2])  # zero weight; two components
    assert dist[3, 1, 2] == pytest.approx(0.6)  # the lighter of two parallel edges
    assert dist[4, 0, 1] == 0
    in_tree = mst_scipy(counts, edge_index, weight)
    loops = edge_index[0] == edge_index[1]
    assert not in_tree[loops].any()
    zero = (weight == 0) & ~loops
    assert in_tree[zero].all()  # zero-weight edges are edges, and here tree edges
    labels = components_scipy(counts, edge_index)
    assert len(set(labels[1:4].tolist())) == 3 and len(set(labels[4:8].tolist())) == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_families_are_simple_undirected_graphs(family: str) -> None:
    counts = torch.tensor([1, 2, 5, 9, 16])
    edge_index, weight = random_graphs(family, counts, gen(0), degree=3.0)
    validate_graph(counts, edge_index, weight)
    n = int(counts.sum())
    keys = edge_index[0] * n + edge_index[1]
    assert torch.unique(keys).numel() == keys.numel(), "no duplicate edges"
    assert not (edge_index[0] == edge_index[1]).any(), "no self loops"
    rev = edge_index[1] * n + edge_index[0]
    order = torch.argsort(keys)
    pos = torch.searchsorted(keys[order], rev)
    assert torch.equal(keys[order][pos], rev), "both directions stored"
    assert torch.equal(weight[order][pos], weight), "one weight per undirected edge"
    assert (weight >= 0).all()
    if family == "complete":
        assert edge_index.shape[1] == int((counts * (counts - 1)).sum())
    if family == "grid":  # a grid is connected
        labels = components_scipy(counts, edge_index)
        assert len(set(labels.tolist())) == counts.numel()


# -- tasks ---------------------------------------------------------------------------------------


@pytest.fixture(params=GRAPH_TASKS)
def graph_task(request, compose_config) -> GraphTask:
    cfg = compose_config("train", (f"task={request.param}",)).task
    return instantiate(cfg, test_size=6, val_size=4)


def test_graph_task_configs_found() -> None:
    assert {"graph_edge_copy", "graph_shortest_path", "graph_connectivity", "graph_mst"} <= set(GRAPH_TASKS)


def test_training_draws_node_counts_in_range(graph_task: GraphTask) -> None:
    p = graph_task.sample(64, gen(0))
    sizes = torch.bincount(p.x.batch, minlength=64)
    assert torch.equal(sizes.float(), p.difficulty)
    assert int(sizes.min()) == graph_task.min_nodes and int(sizes.max()) == graph_task.max_nodes


def test_split_levels_are_node_counts(graph_task: GraphTask) -> None:
    levels = graph_task.split_levels()
    assert list(levels) == ["train", "val", "test", "harder", "harder_20", "harder_30", "harder_50"]
    for name, nodes in [("test", 10), ("harder", 15), ("harder_20", 20), ("harder_50", 50)]:
        p = graph_task.split(name)
        assert (p.difficulty == nodes).all()
        assert torch.equal(torch.bincount(p.x.batch), torch.full((6,), nodes))
    val = graph_task.split("val").difficulty
    assert ((val >= 2) & (val <= 10)).all()


def test_mixed_batch_equals_one_at_a_time(graph_task: GraphTask) -> None:
    """Targets, metrics, energies and a descent per instance do not depend on the batch around them."""
    levels = torch.tensor([1.0, 7.0, 2.0, 12.0, 4.0])
    p = graph_task.generate(5, levels, gen(3))
    torch.manual_seed(0)
    energy = GNNEnergy(**graph_task.dims(), width=16)
    y = graph_task.init_answer(p, gen(4))
    e = energy.energy(p.x, y)
    metrics = graph_task.metrics(p, y)
    solver = GradientDescent(step_size=0.5, max_steps=3)
    solved = solver.solve(energy, p.x, y, segment=p.segment).y
    for i in range(5):
        q = p.select(torch.tensor([i]))
        rows = p.segment == i
        assert torch.equal(q.target, p.target[rows])
        counts, edge_index, weight = graph_task.input_graph(q.x)
        alone = graph_task.truth(counts, edge_index, weight, q.x.edge_index).float().unsqueeze(1)
        assert torch.equal(alone, q.target), "ground truth of the instance alone"
        torch.testing.assert_close(energy.energy(q.x, y[rows]), e[i : i + 1], rtol=1e-5, atol=1e-5)
        for name, value in graph_task.metrics(q, y[rows]).items():
            torch.testing.assert_close(value, metrics[name][i : i + 1], rtol=1e-6, atol=1e-7)
        descent = solver.solve(energy, q.x, y[rows], segment=q.segment).y
        torch.testing.assert_close(descent, solved[rows], rtol=1e-4, atol=1e-5)


def test_one_node_graphs_have_no_rows_and_finite_loss(graph_task: GraphTask) -> None:
    p = graph_task.generate(3, torch.tensor([1.0, 1.0, 3.0]), gen(0))
    assert (p.segment == 2).all()
    assert torch.isfinite(graph_task.loss(p, p.target + 1)).all()
    assert graph_task.check(p, p.target).all()


@pytest.mark.parametrize("level", [0.0, 2.5, -3.0])
def test_bad_node_counts_raise(graph_task: GraphTask, level: float) -> None:
    with pytest.raises(ValueError, match="node count"):
        graph_task.generate(2, level, gen(0))


def test_bad_constructor_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="erdos_renyi") as err:
        ShortestPath(family="erdos-renyi")
    assert all(f in str(err.value) for f in FAMILIES)
    with pytest.raises(ValueError, match="max_nodes"):
        EdgeCopy(min_nodes=5, max_nodes=3)
    with pytest.raises(ValueError, match="min_nodes"):
        EdgeCopy(min_nodes=0)
    with pytest.raises(ValueError, match="edge_prob"):
        Connectivity(family="erdos_renyi", edge_prob=1.5)


def test_irem_settings() -> None:
    """Complete graphs with one value per edge (IREM) and sparse families with an is-edge channel."""
    assert ShortestPath().dims() == {"edge_dim": 1, "y_dim": 1}
    assert ShortestPath(family="knn").dims() == {"edge_dim": 2, "y_dim": 1}
    p = Connectivity(family="erdos_renyi", edge_prob=0.05).generate(200, 10.0, gen(0))
    assert p.x.edge_attr.mean().item() == pytest.approx(0.05, abs=0.01)
    assert set(p.x.edge_attr.unique().tolist()) <= {0.0, 1.0}
    sp_ = ShortestPath().generate(4, 6.0, gen(0))
    assert ((sp_.x.edge_attr >= 0) & (sp_.x.edge_attr <= 1)).all()
    assert (sp_.target <= sp_.x.edge_attr + 1e-6).all(), "a path is never longer than the direct edge"


# -- metrics ----------------------------------------------------------------------------------------


def test_binary_metrics_by_hand() -> None:
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]).unsqueeze(1)
    y = torch.tensor([0.9, 0.2, 0.1, 0.7, 0.3, 0.8, 0.6]).unsqueeze(1)
    segment = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    m = binary_metrics(y, target, segment, 2)
    torch.testing.assert_close(m["accuracy"], torch.tensor([3 / 5, 1.0]))
    # instance 0: recall on positives 1/2, on negatives 2/3; instance 1 has positives only
    torch.testing.assert_close(m["balanced_accuracy"], torch.tensor([(1 / 2 + 2 / 3) / 2, 1.0]))


def test_shortest_path_within_5pct() -> None:
    task = ShortestPath(test_size=4)
    p = task.generate(2, torch.tensor([2.0, 3.0]), gen(0))
    y = p.target.clone()
    y[0] *= 1.04  # instance 0 (2 rows): one row 4% off, the other 10% off
    y[1] *= 1.10
    m = task.metrics(p, y)
    assert m["within_5pct"][0] == pytest.approx(0.5)
    assert m["within_5pct"][1] == pytest.approx(1.0)
    assert set(m) == {"mse", "within_5pct"}
    assert set(MSTMembership(test_size=4).metrics(p, y)) == {"mse", "accuracy", "balanced_accuracy"}


# -- bad input gets a clear error ---------------------------------------------------------------------


def test_validate_graph_names_the_problem() -> None:
    ei = torch.tensor([[0, 1], [1, 0]])
    validate_graph(torch.tensor([2]), ei, torch.ones(2))
    with pytest.raises(ValueError, match="no nodes"):
        validate_graph(torch.tensor([2, 0]), ei, torch.ones(2))
    with pytest.raises(ValueError, match="no graphs"):
        validate_graph(torch.tensor([], dtype=torch.long), ei)
    with pytest.raises(ValueError, match="out of range"):
        validate_graph(torch.tensor([2]), torch.tensor([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="out of range"):
        validate_graph(torch.tensor([2]), torch.tensor([[0, -1], [1, 0]]))
    with pytest.raises(ValueError, match="different graphs"):
        validate_graph(torch.tensor([1, 1]), ei)
    with pytest.raises(ValueError, match="NaN"):
        validate_graph(torch.tensor([2]), ei, torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="one per edge"):
        validate_graph(torch.tensor([2]), ei, torch.ones(3))
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        validate_graph(torch.tensor([2]), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="negative"):
        shortest_paths_dense(torch.tensor([2]), ei, torch.tensor([-1.0, -1.0]))


def graph_problem() -> Problem:
    return EdgeCopy(test_size=4).generate(3, torch.tensor([2.0, 4.0, 3.0]), gen(0))


def test_energy_rejects_bad_graphs_with_clear_errors() -> None:
    energy = GNNEnergy(edge_dim=1, y_dim=1, width=8)
    p = graph_problem()
    y = p.target
    energy.energy(p.x, y)  # fine
    x = p.x.clone()
    x.edge_index = x.edge_index.clone()
    x.edge_index[0, 0] = 99
    with pytest.raises(ValueError, match="edge index out of range"):
        energy.energy(x, y)
    x = p.x.clone()
    x.edge_attr = x.edge_attr.clone()
    x.edge_attr[1, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        energy.energy(x, y)
    x = p.x.clone()
    x.edge_attr = torch.ones(x.edge_attr.shape[0], 2)
    with pytest.raises(ValueError, match=r"edge_dim=1.*edge_attr"):
        energy.energy(x, y)
    with pytest.raises(ValueError, match="one row per edge"):
        energy.energy(p.x, y[:-1])
    with pytest.raises(ValueError, match="no nodes"):
        energy.energy(make_batch(torch.tensor([0]), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 1)), y[:0])
    with pytest.raises(ValueError, match="torch-geometric"):
        energy.energy(torch.zeros(3, 4), y)


@pytest.mark.parametrize("truth", ["shortest_paths", "components", "mst"])
def test_ground_truth_rejects_bad_graphs(truth: str) -> None:
    def run(counts, edge_index, weight):
        if truth == "shortest_paths":
            return shortest_paths_dense(counts, edge_index, weight)
        if truth == "components":
            return components_scipy(counts, edge_index)
        return mst_scipy(counts, edge_index, weight)

    ei = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="no nodes"):
        run(torch.tensor([0]), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0))
    with pytest.raises(ValueError, match="out of range"):
        run(torch.tensor([2]), torch.tensor([[0, 5], [1, 0]]), torch.ones(2))
    if truth != "components":
        with pytest.raises(ValueError, match="NaN"):
            run(torch.tensor([2]), ei, torch.tensor([math.nan, 1.0]))
        with pytest.raises(ValueError, match="one per edge"):
            run(torch.tensor([2]), ei, torch.ones(5))


def test_select_on_a_graph_batch_regathers_rows_and_segment() -> None:
    """A GraphBatch picks graphs for Problem.select: their answer rows, difficulty and segment follow."""
    from torch_geometric.data import Data

    graphs = [Data(x=torch.ones(n, 1), edge_index=torch.tensor([[0], [n - 1]]).repeat(1, n)) for n in (2, 3, 4)]
    x = GraphBatch.from_data_list(graphs)
    segment = x.batch[x.edge_index[0]]
    target = torch.arange(segment.numel(), dtype=torch.float32).unsqueeze(1)
    p = Problem(x=x, target=target, segment=segment, difficulty=torch.tensor([2.0, 3.0, 4.0]), num_instances=3)
    q = p.select(torch.tensor([2, 0]))
    assert q.num_instances == 2 and q.x.num_graphs == 2
    assert torch.equal(q.target, torch.cat([target[segment == 2], target[segment == 0]]))
    assert torch.equal(q.segment, torch.tensor([0, 0, 0, 0, 1, 1]))
    assert torch.equal(q.segment, q.x.batch[q.x.edge_index[0]])
    assert torch.equal(q.difficulty, torch.tensor([4.0, 2.0]))
    assert isinstance(q.x, GraphBatch)  # a selection can be selected again
