"""irem/evaluation.py: rows for every split x budget plus 'best', correct means, table and files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.evaluation import evaluate
from irem.objectives.irem import IREMObjective
from irem.records import write_results
from irem.seeds import eval_generator
from irem.solvers.gradient_descent import GradientDescent
from irem.tables import format_solves, format_table
from irem.tasks.matrix import Inverse

SPLITS = ("test", "harder")
BUDGETS = (1, 3)


@pytest.fixture(scope="module")
def setup():
    task = Inverse(size=3, test_size=10, val_size=8)
    torch.manual_seed(0)
    model = EnergyModel(
        MLPEnergy(**task.dims(), width=16), GradientDescent(step_size=1.0, max_steps=3), IREMObjective()
    )
    rows = evaluate(task, model, SPLITS, BUDGETS, seed=0, batch_size=4)
    return task, model, rows


def test_rows_cover_every_split_and_budget_plus_best(setup) -> None:
    _, _, rows = setup
    keys = [(r["split"], r["budget"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == {(s, b, "mse") for s in SPLITS for b in ("1", "3", "best")}
    for r in rows:
        assert set(r) == {
            "split",
            "budget",
            "metric",
            "value",
            "median",
            "n",
            "steps_mean",
            "solve_seconds",
            "diverged",
            "max_steps",
            "ignores_budget",
        }
        assert r["ignores_budget"] is False
        assert r["n"] == 10 and r["solve_seconds"] > 0 and r["value"] > 0
        assert r["steps_mean"] == 3  # the fixed solver's one solve runs to the largest budget


def test_values_are_mean_per_instance_metrics(setup) -> None:
    """The batched evaluation (batches of 4, one generator per split) averages per-instance metrics."""
    task, model, rows = setup
    value = {(r["split"], r["budget"]): r["value"] for r in rows}
    for split in SPLITS:
        problem = task.split(split)
        g = eval_generator(0, split)
        per_label: dict[str, list[torch.Tensor]] = {}
        for lo in range(0, 10, 4):
            part = problem.select(torch.arange(lo, min(lo + 4, 10)))
            for label, y in model.predict(task, part, BUDGETS, g).answers.items():
                per_label.setdefault(label, []).append(task.metrics(part, y)["mse"])
        median = {(r["split"], r["budget"]): r["median"] for r in rows}
        for label, parts in per_label.items():
            expected = float(torch.cat(parts).double().mean())
            assert value[(split, label)] == pytest.approx(expected, rel=1e-6), (split, label)
            assert median[(split, label)] == pytest.approx(float(torch.cat(parts).double().median()), rel=1e-6)


def test_evaluation_starts_never_replay_the_trainers_stream() -> None:
    """The trainer draws from manual_seed(seed); evaluation starts must come from elsewhere."""
    train = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    for split in SPLITS:
        starts = torch.rand(1000, generator=eval_generator(0, split))
        assert not torch.isin(starts, train).any(), split
    other = torch.rand(8, generator=eval_generator(0, "harder"))
    assert not torch.equal(other, torch.rand(8, generator=eval_generator(0, "test")))
    assert not torch.equal(other, torch.rand(8, generator=eval_generator(1, "harder")))


def test_best_is_no_worse_in_energy(setup) -> None:
    task, model, _ = setup
    problem = task.split("test")
    g = torch.Generator().manual_seed(0)
    preds = model.predict(task, problem, [1, 3], g)
    with torch.no_grad():
        e_best = model.energy(problem.x, preds.answers["best"])
        for b in ("1", "3"):
            assert (e_best <= model.energy(problem.x, preds.answers[b]) + 1e-6).all()


def test_evaluation_is_seeded(setup) -> None:
    task, model, rows = setup

    def strip(rs):
        return [{k: v for k, v in r.items() if k != "solve_seconds"} for r in rs]

    assert strip(evaluate(task, model, SPLITS, BUDGETS, seed=0, batch_size=4)) == strip(rows)
    assert strip(evaluate(task, model, SPLITS, BUDGETS, seed=1, batch_size=4)) != strip(rows)


def test_format_table_contains_every_split_and_budget(setup) -> None:
    _, _, rows = setup
    table = format_table(rows, "inverse-energy")
    lines = table.splitlines()
    assert lines[0].startswith("inverse-energy") and "mse" in lines[0]
    assert "steps 1" in lines[0] and "steps 3" in lines[0] and "best" in lines[0]
    assert lines[0].index("steps 1") < lines[0].index("steps 3") < lines[0].index("best")
    for split in SPLITS:
        line = next(x for x in lines if x.split() and x.split()[0] == split)
        value = {r["budget"]: r["value"] for r in rows if r["split"] == split}
        assert [float(v) for v in line.split()[1:]] == pytest.approx([value["1"], value["3"], value["best"]], rel=1e-3)


def test_a_model_that_ignores_the_budget_gets_one_column() -> None:
    """Issue 32: a feed-forward net printed the same number under seven `steps N` headers."""
    from irem.baselines.feedforward import FeedForward

    task = Inverse(size=3, test_size=10, val_size=8)
    torch.manual_seed(0)
    rows = evaluate(task, FeedForward(**task.dims(), width=16), SPLITS, (1, 10, 80), seed=0, batch_size=4)
    assert all(r["ignores_budget"] for r in rows)
    lines = format_table(rows, "inverse-feedforward").splitlines()
    assert lines[0].split()[1:] == ["mse", "any", "budget"]
    for split in SPLITS:
        line = next(x for x in lines if x.split() and x.split()[0] == split)
        assert [float(v) for v in line.split()[1:]] == pytest.approx(
            [next(r["value"] for r in rows if r["split"] == split and r["budget"] == "80")], rel=1e-3
        )


def test_status_columns_do_not_repeat_the_whole_solves(setup) -> None:
    """Issue 32: the per-budget counts of diverged and still-moving instances repeated, under the
    largest budget and `best`, the whole solve's status; it is now one column pair of the solve line."""
    _, _, rows = setup
    lines = format_solves(rows, "inverse-energy").splitlines()
    assert lines[0].split()[1:] == ["solve", "instances", "steps", "used", "seconds", "diverged", "max_steps"]
    final = {r["split"]: r for r in rows if r["budget"] == "best"}
    for split in SPLITS:
        line = next(x for x in lines if x.split() and x.split()[0] == split)
        assert line.split()[-2:] == [str(final[split]["diverged"]), str(final[split]["max_steps"])]
    status_heads = [x for x in lines if "(instances)" in x]
    assert len(status_heads) == 2 and all(x.split()[-1] == "1" for x in status_heads)  # steps 1 alone
    assert not any("best" in x or "steps 3" in x for x in status_heads)


def test_write_results_json_and_csv(setup, tmp_path: Path) -> None:
    _, _, rows = setup
    json_path, csv_path = write_results(rows, tmp_path / "out")
    assert json.loads(json_path.read_text()) == rows
    with csv_path.open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows)
    assert [(r["split"], r["budget"]) for r in read] == [(r["split"], r["budget"]) for r in rows]
    assert [float(r["value"]) for r in read] == pytest.approx([r["value"] for r in rows])


def test_empty_budgets_rejected(setup) -> None:
    task, model, _ = setup
    with pytest.raises(ValueError, match="budgets"):
        evaluate(task, model, SPLITS, [])


def test_levels_are_fresh_seeded_sets_one_row_each(setup) -> None:
    """eval.levels: the study's seeded sets (one generator per level), named "level <value>"."""
    from irem.problem_sets import make_sets

    task, model, _ = setup
    rows = evaluate(task, model, [], BUDGETS, seed=0, batch_size=4, levels=[1.0, 0.2], instances=6)
    assert {(r["split"], r["budget"]) for r in rows} == {
        (s, b) for s in ("level 1", "level 0.2") for b in ("1", "3", "best")
    }
    assert {r["n"] for r in rows} == {6}
    alone = evaluate(task, model, [], BUDGETS, seed=0, batch_size=4, levels=[0.2], instances=6)
    strip = [{k: v for k, v in r.items() if k != "solve_seconds"} for r in rows if r["split"] == "level 0.2"]
    assert strip == [{k: v for k, v in r.items() if k != "solve_seconds"} for r in alone]  # independent of level 1
    problem = make_sets(task, [0.2], 6, seed=0, mixed=False)[0].problem
    preds = model.predict(task, problem, BUDGETS, eval_generator(0, "level 0.2"))
    one = next(r["value"] for r in alone if r["budget"] == "1")
    assert one == pytest.approx(float(task.metrics(problem, preds.answers["1"])["mse"].mean()), rel=1e-5)
    default = evaluate(task, model, [], [1], seed=0, levels=[0.5])
    assert {r["n"] for r in default} == {task.test_size}
