"""irem/problem.py: the Problem and SolveResult containers and the per-instance reductions."""

from __future__ import annotations

import math

import pytest
import torch

from irem.problem import Problem, SolveResult, Status, per_instance_mean, per_instance_sum, per_row


def dense(n: int = 6) -> Problem:
    g = torch.Generator().manual_seed(0)
    return Problem(
        x=torch.randn(n, 4, generator=g),
        target=torch.randn(n, 3, generator=g),
        difficulty=torch.arange(n, dtype=torch.float32),
        info={"mask": torch.rand(n, 3, generator=g), "shift": torch.arange(n) * 2},
    )


def assert_same(a: Problem, b: Problem) -> None:
    assert a.num_instances == b.num_instances
    for name in ("x", "target", "difficulty"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.info.keys() == b.info.keys()
    for k in a.info:
        assert torch.equal(a.info[k], b.info[k]), k


def test_select_then_cat_round_trip() -> None:
    p = dense(6)
    parts = [p.select(torch.arange(0, 2)), p.select(torch.arange(2, 5)), p.select(torch.tensor([5]))]
    assert [q.num_instances for q in parts] == [2, 3, 1]
    assert_same(Problem.cat(parts), p)


def test_select_picks_instances_in_order() -> None:
    p = dense(6)
    idx = torch.tensor([4, 0, 4])
    q = p.select(idx)
    assert q.num_instances == 3
    assert torch.equal(q.x, p.x[idx]) and torch.equal(q.target, p.target[idx])
    assert torch.equal(q.difficulty, p.difficulty[idx])
    assert torch.equal(q.info["mask"], p.info["mask"][idx]) and torch.equal(q.info["shift"], p.info["shift"][idx])


def test_select_keeps_missing_fields_missing() -> None:
    p = Problem(x=torch.zeros(4, 2))
    q = p.select(torch.tensor([1, 2]))
    assert q.target is None and q.difficulty is None and q.num_instances == 2
    assert Problem.cat([q, q]).target is None


def test_num_instances_inference() -> None:
    assert Problem(x=torch.zeros(5, 2)).num_instances == 5
    assert len(Problem(x=torch.zeros(5, 2))) == 5
    assert Problem(x={"graph": None}, target=torch.zeros(7, 1)).num_instances == 7
    seg = torch.tensor([0, 0, 1, 2, 2, 2])
    assert Problem(x=torch.zeros(6, 1), segment=seg).num_instances == 3  # segment wins over x rows
    assert Problem(x=torch.zeros(6, 1), segment=seg, num_instances=4).num_instances == 4  # explicit wins
    assert Problem(x=torch.zeros(0, 1), segment=torch.zeros(0, dtype=torch.long)).num_instances == 0
    with pytest.raises(ValueError, match="num_instances"):
        Problem(x=[1, 2, 3])


def test_segmented_problems_refuse_select_and_cat() -> None:
    p = Problem(x=torch.zeros(3, 1), segment=torch.tensor([0, 0, 1]))
    with pytest.raises(NotImplementedError, match="dense"):
        p.select(torch.tensor([0]))
    with pytest.raises(NotImplementedError, match="dense"):
        Problem.cat([p, p])


def test_to_moves_every_tensor() -> None:
    p = dense(3)
    q = p.to("cpu")
    assert_same(p, q)
    assert q.x.device.type == "cpu" and q.info["mask"].device.type == "cpu"


def test_per_row_without_segment() -> None:
    values = torch.tensor([1.0, 2.0, 3.0])
    like = torch.zeros(3, 4, 5)
    out = per_row(values, like, None)
    assert out.shape == (3, 1, 1)
    assert torch.equal((out * torch.ones_like(like))[:, 2, 3], values)


def test_per_row_with_segment() -> None:
    values = torch.tensor([10.0, 20.0, 30.0])
    seg = torch.tensor([0, 0, 2, 1, 2])
    out = per_row(values, torch.zeros(5, 2), seg)
    assert out.shape == (5, 1)
    assert out.squeeze(1).tolist() == [10.0, 10.0, 30.0, 20.0, 30.0]


def test_per_instance_sum_without_segment() -> None:
    rows = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    assert per_instance_sum(rows, None, 2).tolist() == [sum(range(12)), sum(range(12, 24))]


def test_per_instance_sum_and_mean_with_segment() -> None:
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    seg = torch.tensor([0, 2, 0, 2, 2])
    # instance 1 owns no rows: sum 0, mean 0 (not NaN)
    assert per_instance_sum(rows, seg, 3).tolist() == [1 + 2 + 5 + 6, 0.0, 3 + 4 + 7 + 8 + 9 + 10]
    assert per_instance_mean(rows, seg, 3).tolist() == pytest.approx([14 / 4, 0.0, 41 / 6])
    assert per_instance_mean(rows, None, 5).tolist() == [1.5, 3.5, 5.5, 7.5, 9.5]


def test_per_instance_sum_is_differentiable() -> None:
    rows = torch.ones(4, 2, requires_grad=True)
    per_instance_sum(rows * torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([0, 1, 0, 1]), 2)[1].backward()
    assert rows.grad[:, 0].tolist() == [0.0, 2.0, 0.0, 4.0]


def result(status: list[int]) -> SolveResult:
    n = len(status)
    y = torch.zeros(n, 2, requires_grad=True) * 1
    return SolveResult(
        y=y,
        steps=torch.tensor([3] * n),
        status=torch.tensor(status),
        energy=torch.tensor([1.0] * (n - 1) + [math.nan]),
        best_y=y,
        best_energy=torch.tensor([0.5] * n),
        best_step=torch.zeros(n, dtype=torch.long),
        trajectory=[y, y],
        snapshots={1: y},
    )


def test_solve_result_summary_and_counts() -> None:
    r = result([int(Status.CONVERGED), int(Status.MAX_STEPS), int(Status.MAX_STEPS), int(Status.DIVERGED)])
    assert r.num_instances == 4
    assert r.count(Status.MAX_STEPS) == 2
    s = r.summary()
    assert s["converged"] == 0.25 and s["diverged"] == 0.25 and s["steps_mean"] == 3.0
    assert s["energy_final"] == 1.0  # NaN energies of diverged instances are ignored
    assert s["energy_best"] == 0.5


def test_solve_result_detach() -> None:
    r = result([1, 1]).detach()
    assert not r.y.requires_grad and not r.best_y.requires_grad
    assert not any(t.requires_grad for t in r.trajectory) and not r.snapshots[1].requires_grad


def test_select_on_a_graph_batch_regathers_rows_and_segment() -> None:
    """Segmented problems with a torch-geometric x pick instances, their answer rows and difficulty."""
    from torch_geometric.data import Batch, Data

    graphs = [Data(x=torch.ones(n, 1), edge_index=torch.tensor([[0], [n - 1]]).repeat(1, n)) for n in (2, 3, 4)]
    x = Batch.from_data_list(graphs)
    segment = x.batch[x.edge_index[0]]
    target = torch.arange(segment.numel(), dtype=torch.float32).unsqueeze(1)
    p = Problem(x=x, target=target, segment=segment, difficulty=torch.tensor([2.0, 3.0, 4.0]), num_instances=3)
    q = p.select(torch.tensor([2, 0]))
    assert q.num_instances == 2 and q.x.num_graphs == 2
    assert torch.equal(q.target, torch.cat([target[segment == 2], target[segment == 0]]))
    assert torch.equal(q.segment, torch.tensor([0, 0, 0, 0, 1, 1]))
    assert torch.equal(q.segment, q.x.batch[q.x.edge_index[0]])
    assert torch.equal(q.difficulty, torch.tensor([4.0, 2.0]))
