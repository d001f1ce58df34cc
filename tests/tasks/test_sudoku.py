"""tasks/sudoku.py: the Sudoku task on top of the board machinery (tests/tasks/test_sudoku_boards.py).

The shared task tests (test_tasks.py) run on its config; these pin what is particular to it:
givens that no solver moves, a check that agrees with a brute-force validity test, splits in
their bands, files read as splits, a finite training set under random symmetries, IRED's +-1
relaxation, and the board metrics.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.best_of_n import BestOfN
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import EnergyPlateau
from irem.tasks import sudoku_boards as boards
from irem.tasks.sudoku import Sudoku, one_hot_pm1, puzzles_of
from irem.tasks.sudoku_data import save_csv


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Sudoku:
    return Sudoku(test_size=12, val_size=6, cache_dir=str(tmp_path_factory.mktemp("cache")))


SOLVERS = {
    "gd": lambda: GradientDescent(step_size=5.0, max_steps=6),
    "accept_momentum": lambda: GradientDescent(step_size=5.0, max_steps=6, accept_if_lower=True, momentum=0.5),
    "langevin": lambda: GradientDescent(step_size=5.0, max_steps=6, noise=0.5),
    "adaptive": lambda: AdaptiveDescent(GradientDescent(step_size=5.0), rules=[EnergyPlateau(tol=0.1)], max_steps=6),
    "best_of_n": lambda: BestOfN(GradientDescent(step_size=5.0, max_steps=6), starts=3),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_givens_are_bit_identical_after_every_solver(task: Sudoku, name: str) -> None:
    torch.manual_seed(0)
    model = EnergyModel(MLPEnergy(**task.dims(), width=32), SOLVERS[name](), IREMObjective(), replay_capacity=0)
    p = task.split("test")
    given = p.constraint.mask
    answers = model.predict(task, p, [1, 6], gen(1)).answers
    for label, y in answers.items():
        assert torch.equal(y[given], p.constraint.values[given]), f"{name}: givens moved at {label}"
        given_cells = puzzles_of(p.x) > 0
        assert torch.equal(boards_of(y)[given_cells], puzzles_of(p.x)[given_cells])
    assert not torch.equal(answers["6"][~given], answers["1"][~given])  # the blank cells did move


def boards_of(y: torch.Tensor) -> torch.Tensor:
    return (y.argmax(-1) + 1).to(torch.int8)


def brute_force_valid(board: list[int], puzzle: list[int]) -> bool:
    """Row, column and box sets, and the givens kept: the plainest reading of the rules."""
    grid = [board[r * 9 : r * 9 + 9] for r in range(9)]
    units = [set(row) for row in grid] + [{grid[r][c] for r in range(9)} for c in range(9)]
    units += [
        {grid[r][c] for r in range(br, br + 3) for c in range(bc, bc + 3)} for br in (0, 3, 6) for bc in (0, 3, 6)
    ]
    return all(u == set(range(1, 10)) for u in units) and all(p in (0, b) for p, b in zip(puzzle, board, strict=True))


def test_check_agrees_with_a_brute_force_validity_test(task: Sudoku) -> None:
    """Solutions, solutions with two cells swapped (row sums unchanged), random digits, and a
    valid grid that contradicts a given: check and the brute force agree on every one."""
    p = task.split("test")
    g = gen(3)
    sol = p.target.clone()
    candidates = [sol]
    swapped = sol.clone()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]  # same row sums, broken columns
    candidates.append(swapped)
    candidates.append(torch.randint(0, 9, sol.shape, generator=g))
    candidates.append((sol + 1) % 9)  # a valid grid (digits relabelled) that contradicts the givens
    verdicts = []
    for c in candidates:
        y = one_hot_pm1(c + 1)
        ok = task.check(p, y)
        ref = torch.tensor([brute_force_valid((c[i] + 1).tolist(), puzzles_of(p.x)[i].tolist()) for i in range(len(p))])
        assert torch.equal(ok, ref)
        verdicts.append(ok)
    assert verdicts[0].all() and not verdicts[1].any() and not verdicts[2].any() and not verdicts[3].any()


def test_splits_lie_in_their_bands_and_record_the_search_effort(task: Sudoku) -> None:
    for name, (low, high) in {"test": (30, 45), "val": (30, 45), "harder": (24, 29), "hardest": (17, 29)}.items():
        p = task.split(name)
        givens = (puzzles_of(p.x) > 0).sum(1)
        assert torch.equal(givens.float(), p.difficulty)
        assert bool(((givens >= low) & (givens <= high)).all()), (name, givens.tolist())
        assert p.info["guesses"].shape == (len(p),) and bool((p.info["guesses"] >= 0).all())
    assert task.check(task.split("hardest"), task.target_answer(task.split("hardest"))).all()


def test_a_split_can_be_read_from_a_file(task: Sudoku, tmp_path: Path) -> None:
    made = boards.generate(5, 30, gen(4))
    path = tmp_path / "hard.csv"
    save_csv(path, made.puzzles, made.solutions)
    reader = Sudoku(test_size=5, val_size=5, files={"extreme": str(path)}, cache_dir=task.cache_dir)
    p = reader.split("extreme")
    assert torch.equal(puzzles_of(p.x), made.puzzles) and torch.equal(p.target + 1, made.solutions.long())
    assert "extreme" in reader.split_levels()
    with pytest.raises(ValueError, match="files.missing"):
        Sudoku(files={"missing": str(tmp_path / "none.csv")})


def test_a_finite_training_set_is_seen_under_random_symmetries(task: Sudoku) -> None:
    finite = Sudoku(train_size=20, test_size=4, val_size=4, cache_dir=task.cache_dir)
    pool = finite.training_set()
    batch = finite.sample(64, gen(5))
    assert finite.check(batch, finite.target_answer(batch)).all()  # solutions still solve their puzzles
    raw = {tuple(b.tolist()) for b in pool.puzzles}
    assert not all(tuple(b.tolist()) in raw for b in puzzles_of(batch.x))  # transformed, not copied
    again = finite.sample(64, gen(5))
    assert torch.equal(again.x, batch.x) and torch.equal(again.target, batch.target)
    plain = Sudoku(train_size=20, augment=False, test_size=4, val_size=4, cache_dir=task.cache_dir).sample(8, gen(5))
    assert all(tuple(b.tolist()) in raw for b in puzzles_of(plain.x))


def test_the_pm1_relaxation_scores_squared_distance_on_blank_cells(task: Sudoku) -> None:
    pm1 = Sudoku(relaxation="pm1", test_size=6, val_size=6, cache_dir=task.cache_dir)
    p = pm1.split("test")
    target = pm1.target_answer(p)
    assert torch.equal(pm1.loss(p, target), torch.zeros(len(p)))
    wrong = target.clone()
    wrong[~p.constraint.mask] *= -1  # every blank entry flipped: distance 2 on each
    torch.testing.assert_close(pm1.loss(p, wrong), torch.full((len(p),), 4.0))
    given_only = target.clone()
    given_only[p.constraint.mask] = 0.0  # givens are not scored
    assert torch.equal(pm1.loss(p, given_only), torch.zeros(len(p)))


def test_board_metrics_of_right_and_wrong_answers(task: Sudoku) -> None:
    p = task.split("test")
    right = task.metrics(p, task.target_answer(p, 5.0))
    assert torch.equal(right["board_accuracy"], torch.ones(len(p))) and torch.equal(
        right["violations"], torch.zeros(len(p))
    )
    assert torch.equal(right["cell_accuracy"], torch.ones(len(p)))
    blank = ~p.constraint.mask.all(-1)
    wrong_digits = torch.where(blank, (p.target + 1) % 9, p.target)
    wrong = task.metrics(p, task.target_answer(replace(p, target=wrong_digits), 5.0))
    assert torch.equal(wrong["board_accuracy"], torch.zeros(len(p))) and torch.equal(
        wrong["cell_accuracy"], torch.zeros(len(p))
    )
    assert bool((wrong["violations"] > 0).all()) and bool((wrong["ce"] > right["ce"]).all())


def test_config_builds_the_task(compose_config) -> None:
    built = instantiate(compose_config("train", ("task=sudoku",)).task, test_size=4, val_size=4)
    assert isinstance(built, Sudoku) and built.answer_kind == "categorical"
    with pytest.raises(ValueError, match="relaxation"):
        Sudoku(relaxation="softmax")
    with pytest.raises(ValueError, match="train_givens"):
        Sudoku(train_givens=(10, 45))
