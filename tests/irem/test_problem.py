"""irem/problem.py: the Problem and SolveResult containers and the per-instance reductions."""

from __future__ import annotations

import math

import pytest
import torch

from irem.problem import (
    AnswerConstraint,
    Box,
    Problem,
    SolveResult,
    Status,
    instance_count,
    per_instance_mean,
    per_instance_sum,
    per_row,
)


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


def test_segmented_problems_need_an_input_that_picks_instances() -> None:
    p = Problem(x=torch.zeros(3, 1), segment=torch.tensor([0, 0, 1]))
    with pytest.raises(NotImplementedError, match="InstanceInput"):
        p.select(torch.tensor([0]))
    with pytest.raises(NotImplementedError, match="InstanceInput"):
        Problem.cat([p, p])


class Rows:
    """A minimal non-tensor input: instance i has `sizes[i]` answer rows (the protocol only)."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = list(sizes)

    @property
    def num_instances(self) -> int:
        return len(self.sizes)

    def can_select(self, index: torch.Tensor) -> bool:
        return True

    def select_instances(self, index: torch.Tensor) -> Rows:
        return Rows([self.sizes[i] for i in index.tolist()])

    def cat_instances(self, others: list[Rows]) -> Rows:
        return Rows(self.sizes + [s for o in others for s in o.sizes])

    def to(self, device) -> Rows:
        return self


def test_select_and_cat_through_the_input_protocol_regather_rows_and_segment() -> None:
    """Segmented problems pick instances through x's own protocol; answer rows, per-row info and the
    constraint follow their instances, and the segment is renumbered. An instance with no answer
    rows still counts (the input counts instances, not the segment)."""
    x = Rows([2, 0, 3])
    segment = torch.tensor([0, 0, 2, 2, 2])
    target = torch.arange(5.0).unsqueeze(1)
    mask = torch.tensor([[True], [False], [False], [True], [False]])
    p = Problem(
        x=x,
        target=target,
        segment=segment,
        difficulty=torch.tensor([1.0, 2.0, 3.0]),
        info={"w": torch.arange(5)},
        constraint=AnswerConstraint(mask=mask, values=target + 10),
    )
    assert p.num_instances == 3
    q = p.select(torch.tensor([2, 1, 0]))
    assert q.x.sizes == [3, 0, 2] and q.num_instances == 3
    assert torch.equal(q.target, torch.tensor([[2.0], [3.0], [4.0], [0.0], [1.0]]))
    assert torch.equal(q.segment, torch.tensor([0, 0, 0, 2, 2]))
    assert torch.equal(q.info["w"], torch.tensor([2, 3, 4, 0, 1]))
    assert torch.equal(q.constraint.mask, mask[[2, 3, 4, 0, 1]])
    both = Problem.cat([p, q])
    assert both.num_instances == 6 and both.x.sizes == [2, 0, 3, 3, 0, 2]
    assert torch.equal(both.segment, torch.cat([segment, q.segment + 3]))
    assert torch.equal(both.constraint.values, torch.cat([p.constraint.values, q.constraint.values]))


def test_instance_count_believes_the_input_over_the_segment() -> None:
    y = torch.zeros(5, 1)
    assert instance_count(Rows([2, 3, 0]), y, torch.tensor([0, 0, 1, 1, 1])) == 3
    assert instance_count(torch.zeros(5, 2), y, None) == 5
    assert instance_count(torch.zeros(5, 2), y, torch.tensor([0, 0, 1, 1, 1])) == 2


def test_answer_constraint_fixes_entries_exactly_and_projects_first() -> None:
    y = torch.tensor([[5.0, -5.0, 0.3], [0.1, 0.2, 9.0]])
    mask = torch.tensor([[False, True, False], [True, False, False]])
    values = torch.tensor([[0.0, 7.0, 0.0], [-7.0, 0.0, 0.0]])
    c = AnswerConstraint(mask=mask, values=values, project=Box(-1.0, 1.0))
    out = c.apply(y)
    assert torch.equal(out, torch.tensor([[1.0, 7.0, 0.3], [-7.0, 0.2, 1.0]]))  # fixed values win over the box
    assert torch.equal(c.free_gradient(torch.ones(2, 3)), (~mask).float())
    with pytest.raises(ValueError, match="mask and values together"):
        AnswerConstraint(mask=mask)
    with pytest.raises(ValueError, match="bool"):
        AnswerConstraint(mask=mask.float(), values=values)
    with pytest.raises(ValueError, match="must match"):
        c.apply(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="low <= high"):
        Box(1.0, 0.0)


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
