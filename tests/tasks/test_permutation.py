"""tasks/permutation.py, and what a task with a projection gets from the library: replay that keeps
the projection, and baselines judged inside the constraint."""

from __future__ import annotations

import torch

from irem.baselines.recurrent import Recurrent
from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.predictor import predict_constrained
from irem.problem import simplex_projection
from irem.replay import from_replay, replay_items
from irem.solvers.descent import Descent
from irem.tasks.permutation import Permutation


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_target_is_the_sorting_permutation_and_check_follows_the_order() -> None:
    task = Permutation(n=5, test_size=16, val_size=16)
    p = task.generate(64, 1.0, gen(0))
    picks = p.target.argmax(dim=-1)
    assert torch.equal(p.x.gather(1, picks), p.x.sort(dim=1).values)
    assert task.check(p, p.target).all()
    swapped = p.target.clone()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]  # ranks 0 and 1 exchanged: out of order
    assert not task.check(p, swapped).any()
    repeated = p.target.clone()
    repeated[:, 1] = repeated[:, 0]  # two ranks on one position: not a permutation
    assert not task.check(p, repeated).any()
    nan = p.target.clone()
    nan[0, 0, 0] = float("nan")
    assert not bool(task.check(p, nan)[0])


def test_metrics_score_rows_and_whole_permutations() -> None:
    task = Permutation(n=4, test_size=8, val_size=8)
    p = task.generate(8, 1.0, gen(1))
    y = p.target.clone()
    y[0, [0, 1]] = y[0, [1, 0]]
    m = task.metrics(p, y)
    assert m["row_accuracy"][0] == 0.5 and m["row_accuracy"][1:].eq(1).all()
    assert m["permutation_accuracy"].tolist() == [0.0] + [1.0] * 7


def test_replay_keeps_a_projected_problem_and_gives_back_its_projection() -> None:
    """Before: a problem with a projection had no replay format (None), so replay was off."""
    task = Permutation(n=4, test_size=8, val_size=8)
    p = task.generate(6, 1.0, gen(2))
    y = task.init_answer(p, gen(3))
    items = replay_items(task, p, y)
    assert items is not None and set(items) == {"x", "target", "y"}
    back, y_back = from_replay(task, items, p.constraint.project)
    assert torch.equal(back.x, p.x) and torch.equal(y_back, y)
    assert back.constraint.project is simplex_projection


def test_an_energy_model_on_a_projected_task_trains_with_replay() -> None:
    task = Permutation(n=4, test_size=8, val_size=8)
    energy = MLPEnergy(x_dim=4, y_dim=16, width=32, depth=2)
    model = EnergyModel(energy, Descent(step_size=0.5, max_steps=3), IREMObjective(), replay_capacity=64)
    g = gen(4)
    for _ in range(3):
        loss, _ = model.training_loss(task, task.sample(16, g), g)
        loss.backward()
    assert len(model.replay) == 48


def test_a_baseline_is_judged_inside_the_constraint() -> None:
    """Before: a baseline's raw outputs were scored, rows off the simplex."""
    task = Permutation(n=4, test_size=8, val_size=8)
    model = Recurrent(x_dim=4, y_dim=16, hidden=16, steps=2)
    p = task.generate(10, 1.0, gen(5))
    raw = model.predict(task, p, [2], gen(6)).answers["2"]
    assert not torch.allclose(raw.sum(-1), torch.ones(10, 4))
    y = predict_constrained(model, task, p, [2], gen(6)).answers["2"]
    assert torch.allclose(y.sum(-1), torch.ones(10, 4), atol=1e-5) and bool((y >= 0).all())
    assert torch.equal(y, simplex_projection(raw))
