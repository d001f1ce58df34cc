"""Text with the energy model's machinery: replay of whole windows in a small format, and best-of-N
per position (windows repeated start by start)."""

from __future__ import annotations

import pytest
import torch

from irem.energies.transformer import TransformerEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.best_of_n import BestOfN
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.text import VOCAB_SIZE, TextTask, TokenWindows


@pytest.fixture(scope="module")
def task() -> TextTask:
    return TextTask(context=8, test_size=4, val_size=4)


def tiny_energy(task: TextTask) -> TransformerEnergy:
    torch.manual_seed(0)
    return TransformerEnergy(**task.dims(), width=16, depth=1, heads=2, max_steps=2)


def test_replay_round_trip_keeps_windows_and_stores_small(task: TextTask) -> None:
    problem = task.sample(3, torch.Generator().manual_seed(0))
    y = torch.randn(problem.num_instances, VOCAB_SIZE)
    items = task.replay_items(problem, y)
    assert items["tokens"].dtype == items["target"].dtype == torch.uint8 and items["y"].dtype == torch.float16
    assert {k: v.shape[0] for k, v in items.items()} == {"tokens": 3, "target": 3, "y": 3}  # one unit a window
    back, y_back = task.from_replay(items)
    assert torch.equal(back.x.tokens, problem.x.tokens) and torch.equal(back.target, problem.target)
    assert torch.equal(back.difficulty, problem.difficulty)
    torch.testing.assert_close(y_back, y, atol=2e-3, rtol=1e-3)


def test_training_replays_windows(task: TextTask) -> None:
    model = EnergyModel(
        tiny_energy(task), GradientDescent(step_size=1.0, max_steps=2), IREMObjective(), replay_capacity=8
    )
    g = torch.Generator().manual_seed(0)
    first = task.sample(4, g)
    model.training_loss(task, first, g)
    assert len(model.replay) == 4
    fresh = task.sample(4, g)
    mixed, y0 = model._with_replay(task, fresh, g)
    tokens = mixed.x.tokens
    assert tokens.shape == (4, 8) and y0.shape == (32, VOCAB_SIZE)
    assert torch.equal(tokens[:2], fresh.x.tokens[:2])  # half fresh, half replayed windows
    stored = {tuple(w.tolist()) for w in first.x.tokens}
    assert all(tuple(w.tolist()) in stored for w in tokens[2:])


def test_token_windows_pick_whole_windows_only() -> None:
    windows = TokenWindows(torch.arange(12).view(3, 4))
    assert windows.num_instances == 12
    whole = torch.tensor([8, 9, 10, 11, 0, 1, 2, 3])
    assert windows.can_select(whole)
    assert torch.equal(windows.select_instances(whole).tokens, windows.tokens[[2, 0]])
    for split in (torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1])):
        assert not windows.can_select(split)
    with pytest.raises(IndexError, match="picks whole windows of 4 positions"):
        windows.select_instances(torch.tensor([1, 2, 3, 4]))
    joined = windows.cat_instances([windows.select_instances(whole)])
    assert torch.equal(joined.tokens, torch.cat([windows.tokens, windows.tokens[[2, 0]]]))


def test_best_of_n_picks_each_positions_lowest_energy_start(task: TextTask) -> None:
    energy = tiny_energy(task)
    problem = task.split("val")
    y0 = task.init_answer(problem, torch.Generator().manual_seed(1))
    descent = GradientDescent(step_size=2.0, max_steps=3)
    best = BestOfN(descent=descent, starts=3, pick="final", init="uniform").solve(
        energy, problem.x, y0, generator=torch.Generator().manual_seed(2)
    )
    # the same three starts, descended one by one
    g = torch.Generator().manual_seed(2)
    extra = torch.rand((2, *y0.shape), generator=g) * 2 - 1
    finals = torch.stack([descent.solve(energy, problem.x, s).energy for s in (y0, extra[0], extra[1])])
    torch.testing.assert_close(best.energy, finals.min(0).values, atol=1e-5, rtol=1e-5)
    assert bool((finals.argmin(0) != 0).any()) and bool((finals.argmin(0) == 0).any())  # picks differ by position


def test_adaptive_halting_runs_on_text_without_compacting_windows(task: TextTask) -> None:
    """Positions stop one by one while their window stays in the batch: each stopped position keeps
    the iterate of its stop, exactly as a fixed descent of that many steps leaves it."""
    from irem.solvers.adaptive import AdaptiveDescent
    from irem.solvers.halting import EnergyPlateau

    energy = tiny_energy(task)
    problem = task.split("val")
    y0 = task.init_answer(problem, torch.Generator().manual_seed(1))
    descent = GradientDescent(step_size=2.0, max_steps=6)
    res = AdaptiveDescent(descent=descent, rules=[EnergyPlateau(tol=0.02, patience=1)], max_steps=6).solve(
        energy, problem.x, y0
    )
    steps = res.steps
    assert int(steps.min()) < 6 and int(steps.max()) == 6  # some positions stopped early, some ran on
    for k in sorted(set(steps.tolist())):
        fixed = descent.solve(energy, problem.x, y0, budget=k).y
        rows = steps == k
        torch.testing.assert_close(res.y[rows], fixed[rows], atol=1e-5, rtol=1e-5)


def test_tiny_ebt_training_with_the_system2_recipe_lowers_the_loss(tmp_path) -> None:
    """Every piece of the recipe at once (learnable step at its own lr, random step sizes and
    budgets, detached steps with per-step cross-entropy, Langevin noise, replay; AdamW, warm-up,
    cosine, clipping), on a repetitive text an EBT can learn in a few dozen iterations."""
    from irem.trainer import Trainer

    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    task = TextTask(context=16, path=str(path), test_size=4, val_size=4)
    torch.manual_seed(0)
    energy = TransformerEnergy(**task.dims(), width=32, depth=1, heads=2, max_steps=4)
    solver = GradientDescent(
        step_size=100.0,
        max_steps=2,
        learnable_step=True,
        truncate=0,
        detach_steps=True,
        random_step_size=True,
        random_steps=1,
        noise=0.01,
    )
    model = EnergyModel(
        energy,
        solver,
        IREMObjective(step_supervision=True),
        replay_capacity=16,
        replay_fraction=0.25,
        step_lr_multiplier=10.0,
    )
    val = task.split("val")

    def val_ce() -> float:
        answers = model.predict(task, val, [2], torch.Generator().manual_seed(5)).answers
        return float(task.loss(val, answers["2"]).mean())

    before = val_ce()
    trainer = Trainer(
        task, model, tmp_path / "run", iterations=40, batch_size=8, lr=3e-3, optimizer="adamw",
        weight_decay=0.01, warmup=5, lr_schedule="cosine", grad_clip=1.0, progress=False,
    )  # fmt: skip
    trainer.fit()
    assert len(model.replay) == 16
    after = val_ce()
    assert after < before - 1.0, (before, after)  # measured: 6.12 -> 4.54 nats
