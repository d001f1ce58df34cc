"""9x9 Sudoku as a reasoning task: fill the blank cells so every row, column and box holds 1..9.

An instance is one puzzle. `x` is its givens as a one-hot [81, 9] per cell (all zeros for a blank
cell), the answer `y` a score per cell and digit [81, 9] (categorical: decoded by argmax), and
`target` the solution's digit per cell as a class id 0..8. The givens are the answer's fixed
entries (an `AnswerConstraint`: a given cell's scores are its +-1 one-hot), so no solver ever moves
them and the loss counts the blank cells only. With `relaxation: pm1` (IRED's) the answer is
scored by its squared distance to the +-1 one-hot of the solution instead of by cross-entropy.

The difficulty knob is the number of givens. Puzzles come from tasks/sudoku_boards.py (random full
grids, cells removed while the solution stays unique) and carry the reference solver's search
effort (`info["guesses"]`). Training draws fresh puzzles at 30-45 givens (the SAT-Net band) unless
`train_size` fixes a finite generated set, or `train_path` a file, which are then symmetry-augmented
on the fly (digits, rows within bands, bands, columns within stacks, stacks, transpose). The fixed
splits are seeded and cached on disk (tasks/sudoku_data.py): val and test at 30-45 givens, harder
at 24-29, hardest at the fewest the generator reaches; `files` replaces or adds splits read from
the public CSV layouts. `check` needs nothing but x: the decoded board is a valid Sudoku that keeps
every given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from irem.problem import AnswerConstraint, Problem, per_instance_sum
from irem.task import Task, categorical_loss, free_positions, per_instance_level
from irem.tasks import sudoku_boards as boards
from irem.tasks import sudoku_data as data

RELAXATIONS = ("logits", "pm1")
BANDS: dict[str, int | tuple[int, int]] = {"train": (30, 45), "val": (30, 45), **data.SPLIT_GIVENS}


def one_hot_pm1(digits: Tensor) -> Tensor:
    """Digits 1..9 per cell [N, 81] as +-1 one-hot scores [N, 81, 9] (a blank, 0, is all -1)."""
    hot = F.one_hot(digits.long().clamp_min(1) - 1, boards.DIGITS).float()
    return torch.where((digits > 0).unsqueeze(-1), hot * 2 - 1, torch.full_like(hot, -1.0))


def puzzles_of(x: Tensor) -> Tensor:
    """The puzzle [N, 81] (digits 1..9, 0 blank) behind a one-hot givens input [N, 81, 9]."""
    return torch.where(x.sum(-1) > 0.5, x.argmax(-1) + 1, torch.zeros_like(x[..., 0], dtype=torch.long)).to(torch.int8)


class Sudoku(Task):
    """Complete 9x9 Sudoku puzzles; the number of givens is the difficulty."""

    name = "sudoku"
    answer_kind = "categorical"
    study_levels: ClassVar[tuple[float, ...]] = (45.0, 40.0, 35.0, 30.0, 27.0, 24.0)
    level_label = "givens"
    difficulty_label = "givens"
    error_metric = "board_accuracy"
    higher_is_better = frozenset({"board_accuracy", "cell_accuracy"})

    def __init__(
        self,
        train_givens: tuple[int, int] | list[int] = (30, 45),
        train_size: int | None = None,
        train_path: str | None = None,
        augment: bool = True,
        relaxation: str = "logits",
        files: dict[str, str] | None = None,
        cache_dir: str | None = None,
        test_size: int = 1000,
        val_size: int = 256,
        split_seed: int = 1234,
    ) -> None:
        low, high = (int(v) for v in train_givens)
        if not 17 <= low <= high <= boards.CELLS:
            raise ValueError(
                f"Sudoku: train_givens must be [low, high] with 17 <= low <= high <= 81, got {train_givens}."
            )
        if relaxation not in RELAXATIONS:
            raise ValueError(f"Sudoku: unknown relaxation '{relaxation}'. Valid choices: {', '.join(RELAXATIONS)}.")
        if train_size is not None and int(train_size) < 1:
            raise ValueError(f"Sudoku: train_size must be >= 1 (or null: fresh puzzles every batch), got {train_size}.")
        if train_size is not None and train_path:
            raise ValueError("Sudoku: give train_size (a generated set) or train_path (a file), not both.")
        super().__init__(
            difficulty=float(round((low + high) / 2)),
            harder_difficulty=27.0,
            test_size=test_size,
            val_size=val_size,
            split_seed=split_seed,
        )
        self.train_givens = (low, high)
        self.train_size = None if train_size is None else int(train_size)
        self.train_path = train_path
        self.augment = bool(augment)
        self.relaxation = relaxation
        self.files = {str(k): str(v) for k, v in (files or {}).items()}
        self.cache_dir = cache_dir
        for key, path in [("train_path", train_path)] + [(f"files.{k}", v) for k, v in self.files.items()]:
            if path and not Path(path).expanduser().is_file():
                raise ValueError(f"Sudoku: {key} is {path}, which is not a file.")
        self._train_set: boards.Boards | None = None

    # -- Task ---------------------------------------------------------------------------------
    def dims(self) -> dict[str, int]:
        return {"x_dim": boards.CELLS * boards.DIGITS, "y_dim": boards.CELLS * boards.DIGITS}

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, boards.CELLS, boards.DIGITS)

    def training_difficulty(self, n: int, generator: torch.Generator) -> Tensor:
        low, high = self.train_givens
        return torch.randint(low, high + 1, (int(n),), generator=generator).float()

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        givens = per_instance_level(difficulty, n)
        return self.problem(boards.generate(int(n), givens, generator))

    def sample(self, n: int, generator: torch.Generator, difficulty: float | Tensor | None = None) -> Problem:
        """Fresh puzzles, or (with train_size / train_path) boards of the finite training set, each
        under a fresh random symmetry."""
        if difficulty is not None or (self.train_size is None and not self.train_path):
            return super().sample(n, generator, difficulty)
        pool = self.training_set()
        picked = pool[torch.randint(len(pool), (int(n),), generator=generator)]
        if not self.augment:
            return self.problem(picked)
        puzzles, solutions = boards.augment(picked.puzzles, picked.solutions, generator)
        return self.problem(boards.Boards(puzzles, solutions, picked.givens, picked.guesses))

    def split_levels(self) -> dict[str, float | None]:
        """Every split draws its givens per puzzle from its band (`BANDS`); files may add splits."""
        return {**dict.fromkeys(("train", "val", "test", "harder", "hardest")), **dict.fromkeys(self.files)}

    def split(self, name: str) -> Problem:
        levels = self.split_levels()
        if name not in levels:
            raise ValueError(f"Unknown split '{name}' for task '{self.name}'. Valid splits: {', '.join(levels)}.")
        if name not in self._split_cache:
            size = self.val_size if name == "val" else self.test_size
            if name in self.files:
                found = data.load_csv(self.files[name], max_rows=size, measure_effort=True)
            else:
                found = data.cached_generate(size, BANDS[name], data.split_seed(name, self.split_seed), self.cache_dir)
            self._split_cache[name] = self.problem(found)
        return self._split_cache[name]

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """The decoded board is a valid Sudoku and keeps every given of x (no target is read)."""
        board = (self.decode(problem, y) + 1).to(torch.int8)
        return boards.is_valid_solution(board) & boards.keeps_givens(puzzles_of(problem.x), board)

    def loss(self, problem: Problem, y: Tensor) -> Tensor:
        if self.relaxation == "pm1":  # squared distance to the solution's +-1 one-hot, blank cells only
            free = free_positions(problem, y).unsqueeze(-1).expand_as(y).float()
            sq = (y - self.target_answer(problem)) ** 2 * free
            n = problem.num_instances
            return per_instance_sum(sq, None, n) / per_instance_sum(free, None, n).clamp_min(1)
        return categorical_loss(problem, y)

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        board = (self.decode(problem, y.detach()) + 1).to(torch.int8)
        m = boards.board_metrics(puzzles_of(problem.x), board, (problem.target + 1).to(torch.int8))
        return {
            "board_accuracy": m["solved"],
            "cell_accuracy": m["cell_accuracy"],
            "violations": m["violations"],
            "ce": categorical_loss(problem, y.detach()),
        }

    # -- data files (irem/data_files.py's ReadsFiles) -------------------------------------------
    def read_files(self) -> None:
        """Read train_path and every file split now (each is kept for training and evaluation), so a
        bad line is found before the first iteration rather than at the first step or after training."""
        if self.train_path:
            self.training_set()
        for name in self.files:
            self.split(name)

    def add_files(self, files: Mapping[str, str]) -> None:
        """Splits read from files of the user's ({split: path}; a split of the same name is replaced)."""
        for name, path in files.items():
            if not Path(path).expanduser().is_file():
                raise ValueError(f"Sudoku: files.{name} is {path}, which is not a file.")
            self.files[str(name)] = str(path)
            self._split_cache.pop(str(name), None)
            self.split(str(name))

    # -- boards to problems ------------------------------------------------------------------
    def problem(self, found: boards.Boards) -> Problem:
        """A Problem from boards: one-hot givens in, solution classes out, the givens fixed."""
        puzzles = found.puzzles.long()
        given = (puzzles > 0).unsqueeze(-1).expand(-1, -1, boards.DIGITS)
        x = F.one_hot(puzzles.clamp_min(1) - 1, boards.DIGITS).float() * given.float()
        return Problem(
            x=x,
            target=found.solutions.long() - 1,
            difficulty=found.givens.float(),
            info={"guesses": found.guesses},
            constraint=AnswerConstraint(mask=given.clone(), values=one_hot_pm1(found.puzzles)),
        )

    def training_set(self) -> boards.Boards:
        """The finite training set: generated once (cached on disk by seed) or read from train_path."""
        if self._train_set is None:
            if self.train_path:
                self._train_set = data.load_csv(self.train_path)
            else:
                seed = data.split_seed("train-set", self.split_seed)
                self._train_set = data.cached_generate(self.train_size, self.train_givens, seed, self.cache_dir)
        return self._train_set
