"""tasks/nested.py: exact ground truth at every depth (against numpy/scipy), plans that compute the
same truth node by node, depth read back from x, and the input distributions the docstrings promise.

The shared task tests (test_tasks.py) run on the nested configs too; these are the nested specifics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import floyd_warshall

from irem.composition import run_plan
from irem.tasks.nested import NestedAddition, NestedInverse, NestedShortestPath, NestedTask

DEPTHS = range(1, 7)
SMALL = {"test_size": 4, "val_size": 4}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numpy_addition(task: NestedAddition, x: np.ndarray, depth: int) -> np.ndarray:
    mats = x.reshape(task.slot_count, task.size, task.size)
    total = mats[0].copy()
    for j in range(1, depth + 1):
        total = total + mats[j]
    return total.reshape(-1)


def numpy_inverse(task: NestedInverse, x: np.ndarray, depth: int) -> np.ndarray:
    mats = x[: task.matrix_count * task.cells].reshape(task.matrix_count, task.size, task.size)
    value = mats[0]
    for k in range(1, depth + 1):
        value = value + mats[(k + 1) // 2] if k % 2 else np.linalg.inv(value)
    return value.reshape(-1)


def scipy_distances(task: NestedShortestPath, problem, depth: int) -> np.ndarray:
    """Floyd-Warshall (scipy) per graph on the union of the first `depth` stages only."""
    x = problem.x
    out = []
    for g in range(problem.num_instances):
        rows = (problem.segment == g).nonzero().flatten()
        src, dst = (x.edge_index[:, rows] - int(x.ptr[g])).numpy()
        weight = x.edge_attr[rows, :depth].double().numpy().min(axis=1)
        dense = np.zeros((task.nodes, task.nodes))
        dense[src, dst] = weight
        out.append(floyd_warshall(dense, directed=True)[src, dst])
    return np.concatenate(out)


@pytest.mark.parametrize("depth", DEPTHS)
def test_addition_truth_against_numpy(depth: int) -> None:
    task = NestedAddition(**SMALL)
    p = task.generate(3, depth, gen(depth))
    for i in range(3):
        ref = numpy_addition(task, p.x[i].double().numpy(), depth)
        np.testing.assert_allclose(p.target[i].numpy(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(p.difficulty, torch.full((3,), float(depth)))


@pytest.mark.parametrize("depth", DEPTHS)
def test_inverse_truth_against_numpy(depth: int) -> None:
    task = NestedInverse(**SMALL)
    p = task.generate(3, depth, gen(depth))
    for i in range(3):
        ref = numpy_inverse(task, p.x[i].double().numpy(), depth)
        np.testing.assert_allclose(p.target[i].numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("depth", DEPTHS)
def test_shortest_path_truth_against_scipy(depth: int) -> None:
    task = NestedShortestPath(nodes=6, **SMALL)
    p = task.generate(3, depth, gen(depth))
    np.testing.assert_allclose(p.target[:, 0].numpy(), scipy_distances(task, p, depth), rtol=1e-6, atol=1e-7)


TASKS = {
    "addition": lambda: NestedAddition(size=5, **SMALL),
    "inverse": lambda: NestedInverse(size=5, **SMALL),
    "shortest_path": lambda: NestedShortestPath(nodes=5, **SMALL),
}


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("depth", DEPTHS)
def test_plan_with_exact_nodes_gives_the_truth(name: str, depth: int) -> None:
    """The plan is the computation: answering every node exactly, in order, reproduces the target."""
    task = TASKS[name]()
    p = task.generate(3, depth, gen(10 + depth))
    plan = task.plan(depth)
    assert len(plan.nodes) == depth and set(plan.slots) <= set(task.slots())
    answers = run_plan(
        plan, task.parts(p), p.x, lambda node, x: task.exact(node.slot)(x.double() if torch.is_tensor(x) else x)
    )
    torch.testing.assert_close(answers[plan.output].float(), p.target, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", TASKS)
def test_depth_is_read_back_from_x(name: str) -> None:
    task = TASKS[name]()
    depth = torch.tensor([3.0, 1, 6, 2, 5, 4, 1])
    p = task.generate(7, depth, gen(0))
    assert torch.equal(task.depth_of(p), depth.long())
    assert torch.equal(task.depth_of(p.select(torch.tensor([2, 0]))), torch.tensor([6, 3]))


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("bad", [0, 7, 2.5])
def test_invalid_depth_names_the_valid_ones(name: str, bad: float) -> None:
    task = TASKS[name]()
    with pytest.raises(ValueError, match=r"whole number in 1\.\.6"):
        task.generate(2, bad, gen(0))
    if float(bad).is_integer():
        with pytest.raises(ValueError, match=r"1\.\.6"):
            task.plan(int(bad))


@pytest.mark.parametrize("train_depth, max_depth", [(0, 6), (6, 6), (3, 2)])
def test_training_depths_must_leave_a_harder_split(train_depth: int, max_depth: int) -> None:
    with pytest.raises(ValueError, match="train_depth < max_depth"):
        NestedAddition(train_depth=train_depth, max_depth=max_depth, **SMALL)


def test_splits_and_training_depths() -> None:
    task: NestedTask = NestedAddition(size=3, train_depth=2, max_depth=5, **SMALL)
    assert task.split_levels() == {
        "train": None,
        "val": None,
        "test": 2.0,
        "harder": 3.0,
        "harder_4": 4.0,
        "harder_5": 5.0,
    }
    drawn = task.training_difficulty(500, gen(0))
    assert set(drawn.tolist()) == {1.0, 2.0}
    assert set(task.split("val").difficulty.tolist()) <= {1.0, 2.0}
    assert torch.equal(task.split("harder_5").difficulty, torch.full((4,), 5.0))


def test_unused_inputs_are_neutral_padding() -> None:
    """Zero matrices beyond an addition's depth; weight-1 stages beyond a network's depth."""
    add = NestedAddition(size=3, **SMALL)
    p = add.generate(2, 2, gen(0))
    assert (p.x.reshape(2, add.slot_count, -1)[:, 3:] == 0).all()
    sp = NestedShortestPath(nodes=4, **SMALL)
    q = sp.generate(2, 2, gen(0))
    assert (q.x.edge_attr[:, 2:] == 1).all() and (q.x.edge_attr[:, :2] < 1).all()


def test_inverse_inputs_follow_the_inverse_tasks_distribution() -> None:
    """A + B = 2 R R^T + 0.5 I: symmetric, every eigenvalue >= 0.5; so is every later matrix inverted."""
    task = NestedInverse(size=6, **SMALL)
    p = task.generate(64, 6, gen(0))
    mats = p.x[:, : task.matrix_count * task.cells].reshape(64, task.matrix_count, 6, 6).double()
    value = mats[:, 0]
    for k in range(1, 7):
        if k % 2:
            value = value + mats[:, (k + 1) // 2]
        else:
            torch.testing.assert_close(value, value.transpose(1, 2))
            assert float(torch.linalg.eigvalsh(value).min()) >= 0.5 - 1e-9
            value = torch.linalg.inv(value)
    onehot = p.x[:, task.matrix_count * task.cells :]
    assert torch.equal(onehot, torch.nn.functional.one_hot(torch.full((64,), 5), 6).float())


def test_relative_mse_is_one_for_predicting_zero() -> None:
    task = NestedInverse(size=4, **SMALL)
    p = task.generate(5, 4, gen(0))
    metrics = task.metrics(p, torch.zeros_like(p.target))
    torch.testing.assert_close(metrics["relative_mse"], torch.ones(5))
    assert (task.metrics(p, p.target)["relative_mse"] == 0).all()
