"""Mazes as a reasoning task: mark the unique path from start to goal; the maze's size is its difficulty.

An instance is one perfect maze (tasks/maze_gen.py: randomized depth-first search as deep-thinking
makes them, or randomized Kruskal). `x` is its colour image [3, H, W] (open white, wall black, start
green, goal red), the answer `y` a score per pixel and class [H, W, 2] (categorical: 1 marks the
path), and `target` the path mask [H, W]. Wall pixels are fixed off the path (an `AnswerConstraint`),
so no solver moves them and the cross-entropy counts the open pixels only, as deep-thinking's loss
does. `layout: image` is deep-thinking's exact layout (2N + 6 pixels per side), `layout: grid` one
pixel per maze unit (N + 2 per side, four times fewer pixels, the same information). `check` reads x
alone: the decoded pixels form a chain of open units from start to goal with no unit off it and no
longer than a shortest path, which in a perfect maze is the unique path.

Difficulty is the size N (odd; (N + 1) / 2 cells per side). A training batch is one size, drawn per
batch from `train_sizes`: a fully convolutional model reads any size, and a batch of one size
spends no compute on padding (mixed sizes in one batch are padded with wall, which `generate`
allows and the tests exercise). `val` and `test` are at `size` (the smallest training size, where
deep-thinking reports its test accuracy), and one split per larger size, `size_<N>` for N in
`eval_sizes`, each its own seeded set: the extrapolation the task exists to measure (`harder`, which
evaluation asks for unless told, is another set at the largest of them).
`min_path_length` keeps only mazes whose path is at least that many units long (Maze-Hard style).
`files` reads splits from the public layouts (tasks/maze_files.py): deep-thinking's `.npy` folders
and the Maze-Hard CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from irem.problem import AnswerConstraint, Problem
from irem.task import Task, categorical_loss, per_instance_level
from irem.tasks import maze_files
from irem.tasks import maze_gen as gen


class Maze(Task):
    """Perfect mazes: mark the path from start to goal. Difficulty: the maze size N."""

    name = "maze"
    answer_kind = "categorical"
    study_levels: ClassVar[tuple[float, ...]] = (9.0, 13.0, 19.0, 29.0, 39.0, 59.0)
    level_label = "maze size"
    difficulty_label = "maze size"
    error_metric = "accuracy"
    higher_is_better = frozenset({"accuracy", "pixel_accuracy"})

    def __init__(
        self,
        size: int = 9,
        train_sizes: list[int] | tuple[int, ...] | None = (9, 11, 13),
        eval_sizes: list[int] | tuple[int, ...] = (13, 19, 29, 39, 59),
        generator: str = "dfs",
        layout: str = "grid",
        min_path_length: int = 0,
        files: dict[str, str] | None = None,
        test_size: int = 1000,
        val_size: int = 256,
        split_seed: int = 1234,
    ) -> None:
        self.size = gen.check_size(size, "Maze: size")
        self.train_sizes = tuple(gen.check_size(s, "Maze: train_sizes") for s in (train_sizes or (self.size,)))
        self.eval_sizes = tuple(gen.check_size(s, "Maze: eval_sizes") for s in eval_sizes)
        if generator not in gen.GENERATORS:
            raise ValueError(f"Maze: unknown generator '{generator}'. Valid choices: {', '.join(gen.GENERATORS)}.")
        if layout not in gen.LAYOUTS:
            raise ValueError(f"Maze: unknown layout '{layout}'. Valid choices: {', '.join(gen.LAYOUTS)}.")
        if isinstance(min_path_length, bool) or int(min_path_length) != min_path_length or min_path_length < 0:
            raise ValueError(f"Maze: min_path_length must be a whole number of units >= 0, got {min_path_length!r}.")
        super().__init__(
            difficulty=float(self.size),
            harder_difficulty=float(max(self.eval_sizes, default=self.size)),
            test_size=test_size,
            val_size=val_size,
            split_seed=split_seed,
        )
        self.generator = generator
        self.layout = layout
        self.min_path_length = int(min_path_length)
        self.files = {str(k): str(v) for k, v in (files or {}).items()}
        for split, path in self.files.items():
            if not Path(path).expanduser().exists():
                raise FileNotFoundError(f"Maze: files.{split} is {path}, which does not exist.")

    # -- Task ---------------------------------------------------------------------------------
    def pixels(self, size: int) -> int:
        """Pixels per side of a maze of `size` in this task's layout."""
        return size + 2 if self.layout == "grid" else 2 * size + 6

    def dims(self) -> dict[str, int]:
        side = self.pixels(self.size)
        return {"x_dim": 3 * side * side, "y_dim": 2 * side * side}

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        n, _, h, w = problem.x.shape
        return (n, h, w, 2)

    def training_difficulty(self, n: int, generator: torch.Generator) -> Tensor:
        """One size for the whole batch, drawn from `train_sizes`."""
        pick = int(torch.randint(len(self.train_sizes), (1,), generator=generator))
        return torch.full((int(n),), float(self.train_sizes[pick]))

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        sizes = per_instance_level(difficulty, n)
        bad = [float(s) for s in sizes.unique() if float(s) != int(s) or int(s) < 3 or int(s) % 2 == 0]
        if bad:
            raise ValueError(f"Maze: a maze size must be an odd whole number >= 3 (9, 11, ..., 59), got {bad[0]:g}.")
        mazes = gen.generate(int(n), sizes.long(), generator, self.generator, self.min_path_length)
        return self.problem(mazes)

    def split_levels(self) -> dict[str, float | None]:
        levels: dict[str, float | None] = {"train": float(self.size), "val": float(self.size), "test": float(self.size)}
        levels.update({f"size_{s}": float(s) for s in self.eval_sizes})
        levels["harder"] = self.harder_difficulty  # the largest size, a set of its own: what eval asks by default
        levels.update(dict.fromkeys(k for k in self.files if k not in levels))
        return levels

    def split(self, name: str) -> Problem:
        """A fixed seeded split, or the first `test_size` (`val_size`) mazes of the file `files` names."""
        if name in self.files and name not in self._split_cache:
            size = self.val_size if name == "val" else self.test_size
            self._split_cache[name] = self.problem(maze_files.load(self.files[name], max_rows=size))
        return super().split(name)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """The decoded path is drawable in the layout and is the chain of open units from start to goal."""
        pixels = self.decode(problem, y)
        codes = gen.codes_of(problem.x, self.layout)
        on = gen.units_from_pixels(pixels, self.layout).bool()
        return gen.pixels_well_formed(pixels, self.layout) & gen.is_exact_path(codes, on)

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        """accuracy: every pixel right (deep-thinking's and Maze-Hard's measure); pixel_accuracy over
        open pixels; ce over open pixels."""
        y = y.detach()
        pred = self.decode(problem, y)
        right = pred == problem.target
        free = gen.open_pixels(problem.x)
        return {
            "accuracy": right.flatten(1).all(1).float(),
            "pixel_accuracy": (right & free).flatten(1).sum(1) / free.flatten(1).sum(1).clamp_min(1),
            "ce": categorical_loss(problem, y),
        }

    # -- mazes to problems ----------------------------------------------------------------------
    def problem(self, mazes: gen.Mazes) -> Problem:
        """A Problem from mazes: colour image in, path mask out, the wall pixels fixed off the path."""
        x, target = gen.render(mazes, self.layout)
        return problem_of(x, target, mazes.size.float(), mazes.path_length)


def problem_of(x: Tensor, target: Tensor, size: Tensor, path_length: Tensor) -> Problem:
    """The Problem for colour inputs [N, 3, H, W] and path masks [N, H, W]: walls fixed to "off"."""
    wall = ~gen.open_pixels(x)
    mask = wall.unsqueeze(-1).expand(*wall.shape, 2).clone()
    off = torch.tensor([1.0, -1.0]).expand(*wall.shape, 2).clone()
    return Problem(
        x=x,
        target=target.long(),
        difficulty=size,
        info={"path_length": path_length},
        constraint=AnswerConstraint(mask=mask, values=off),
    )
