"""The `Task` interface: what a reasoning problem is.

A task generates whole batches of problems in torch (never sample by sample), knows its ground
truth and metrics, and exposes a `difficulty` knob. Its `test` and `harder` splits are fixed by a
seed of their own, so no training run can ever draw them.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor

from irem.problem import Problem, per_instance_mean, per_instance_sum
from irem.seeds import split_generator

SPLITS = ("train", "val", "test", "harder")
ANSWER_KINDS = ("continuous", "categorical")


def per_instance_level(level: float | Tensor, n: int) -> Tensor:
    """A difficulty as one float per instance; checks the count and the shape."""
    if int(n) < 1:
        raise ValueError(f"the number of instances must be >= 1, got {n}.")
    level = torch.as_tensor(level, dtype=torch.float32)
    if level.dim() == 0:
        level = level.expand(n)
    if level.shape != (n,):
        raise ValueError(
            f"difficulty must be a scalar or have one value per instance ({n}), got shape {tuple(level.shape)}."
        )
    if not bool(torch.isfinite(level).all()):
        bad = level[~torch.isfinite(level)][0].item()
        raise ValueError(f"difficulty must be finite, got {bad} (a level of NaN or inf describes no problem).")
    return level.clone()


class Task(abc.ABC):
    """A family of problems with a difficulty knob.

    Subclasses implement `generate` (a batch at a given difficulty) and say in `dims` what shape
    an energy must accept. Everything else (fixed splits, the loss and metrics, decoding, the
    uniform start of descent) has a default that fits the task's `answer_kind`.

    What only some tasks need is a capability they opt into by defining it, read where it is used,
    with the default for a task that does not: a replay format (`replay_items` / `from_replay`,
    irem/replay.py), evaluation batches along the task's own units (`eval_batches` and `unit_size`,
    irem/evaluation.py), a prompt for generation (`prompt_problem`, irem/generation.py), wrong answers
    for IRED's contrast (`corrupt`, ired/objective.py). A new method that needs something of a task
    adds such a capability beside itself, not here.
    """

    name: ClassVar[str] = "task"

    answer_kind: ClassVar[str] = "continuous"
    """What an answer is. "continuous": the target's own values, scored by mean squared error.
    "categorical": a score per class in the answer's last dimension (logits, or IRED's +-1
    one-hot relaxation), `target` holding the class ids (the answer's shape without that
    dimension); scored by cross-entropy over the free positions (those the problem's constraint
    does not fix) and decoded by argmax. The shared task tests check the contract of the kind."""
    # -- how studies and tables describe the task (irem-study, irem-eval eval.levels) ---------------
    study_levels: ClassVar[tuple[float, ...] | None] = None
    """The difficulty levels a study sweeps unless told (`levels=`); None: the levels of the
    task's own splits."""
    level_label: ClassVar[str | None] = "level"
    """What the level `generate` takes is called on plots and tables (the inverse task's
    "diagonal shift c"); None for a task whose `generate` ignores it, which has no levels to sweep."""
    difficulty_label: ClassVar[str] = "difficulty"
    """What the per-instance `Problem.difficulty` the task records is called, with its units
    ("condition number", "nodes")."""
    error_metric: ClassVar[str] = "mse"
    """The metric of `metrics` a study reports as its headline."""
    higher_is_better: ClassVar[frozenset[str]] = frozenset()
    """The metrics of `metrics` where a larger value is better (accuracy, PSNR); the rest are errors."""

    def __init__(
        self,
        difficulty: float,
        harder_difficulty: float,
        test_size: int = 1000,
        val_size: int = 256,
        split_seed: int = 1234,
    ) -> None:
        if self.answer_kind not in ANSWER_KINDS:
            raise ValueError(
                f"{type(self).__name__}: unknown answer_kind '{self.answer_kind}'. Valid: {', '.join(ANSWER_KINDS)}."
            )
        for key, value in (("test_size", test_size), ("val_size", val_size)):
            if int(value) < 1:
                raise ValueError(f"{type(self).__name__}: {key} must be >= 1, got {value}.")
        self.difficulty = float(difficulty)
        self.harder_difficulty = float(harder_difficulty)
        self.test_size = int(test_size)
        self.val_size = int(val_size)
        self.split_seed = int(split_seed)
        self._split_cache: dict[str, Problem] = {}

    # -- what subclasses provide ------------------------------------------------------------
    @abc.abstractmethod
    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        """`n` fresh instances; `difficulty` is a scalar or one value per instance."""

    @abc.abstractmethod
    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """Per-instance bool: does `y` answer `problem`? Judged from `problem.x` alone.

        An independent check of the ground truth (A @ Y = I for inverse, not "Y equals the
        stored target"), so the shared task tests can catch a wrong `target`.
        """

    @abc.abstractmethod
    def dims(self) -> dict[str, int]:
        """Keyword arguments that size an energy or baseline for this task (x_dim, y_dim...)."""

    # -- defaults that suit continuous answers -----------------------------------------------
    def training_difficulty(self, n: int, generator: torch.Generator) -> float | Tensor:
        """The difficulty of a training batch of `n`: a scalar, or one value per instance drawn
        from `generator` when training covers a range (graph tasks: a node count per graph)."""
        return self.difficulty

    def sample(self, n: int, generator: torch.Generator, difficulty: float | Tensor | None = None) -> Problem:
        """A training batch at the training difficulty (or the one given)."""
        level = self.training_difficulty(n, generator) if difficulty is None else difficulty
        return self.generate(n, level, generator)

    def split_levels(self) -> dict[str, float | None]:
        """Split name -> difficulty; None draws it per instance as training does.

        A task with several harder levels (graphs at 15, 20, 30, 50 nodes) adds one name per level.
        """
        return {name: self.harder_difficulty if name == "harder" else self.difficulty for name in SPLITS}

    def split(self, name: str) -> Problem:
        """A fixed, seeded split. `train` here is a fixed sample used only for reporting."""
        levels = self.split_levels()
        if name not in levels:
            raise ValueError(f"Unknown split '{name}' for task '{self.name}'. Valid splits: {', '.join(levels)}.")
        if name not in self._split_cache:
            g = split_generator(self.split_seed, name)
            size = self.val_size if name == "val" else self.test_size
            level = levels[name]
            if level is None:
                level = self.training_difficulty(size, g)
            self._split_cache[name] = self.generate(size, level, g)
        return self._split_cache[name]

    def init_answer(self, problem: Problem, generator: torch.Generator) -> Tensor:
        """Where descent starts: IREM's y0 ~ U(-1, 1) in the answer's shape."""
        shape = self.answer_shape(problem)
        return torch.rand(shape, generator=generator) * 2 - 1

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        if problem.target is None:
            raise NotImplementedError(f"Task '{self.name}' must define answer_shape for problems without a target.")
        return tuple(problem.target.shape)

    def loss(self, problem: Problem, y: Tensor) -> Tensor:
        """Per-instance training loss: mean squared error (continuous answers), or cross-entropy
        over the free positions (categorical answers)."""
        if self.answer_kind == "categorical":
            return categorical_loss(problem, y)
        return per_instance_mean((y - problem.target) ** 2, problem.segment, problem.num_instances)

    def target_answer(self, problem: Problem, scale: float = 1.0) -> Tensor:
        """The target in the answer's layout: the target itself (continuous), or `scale` times the
        +-1 one-hot of the target classes (categorical; larger scales are more confident logits).
        Shared tests score and check it; IRED's relaxation trains towards it."""
        if self.answer_kind != "categorical":
            return problem.target
        classes = self.answer_shape(problem)[-1]
        return scale * (torch.nn.functional.one_hot(problem.target.long(), classes).float() * 2 - 1)

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        """Per-instance metrics; evaluation averages them and can cut them by difficulty."""
        return {"mse": self.loss(problem, y.detach())}

    def decode(self, problem: Problem, y: Tensor) -> Tensor:
        """The answer in the task's own terms: itself (continuous), or the class of each position
        (categorical: the argmax of its scores)."""
        return y.argmax(dim=-1) if self.answer_kind == "categorical" else y


def free_positions(problem: Problem, y: Tensor) -> Tensor:
    """Per position of a categorical answer (its shape without the class dimension): True where the
    problem's constraint leaves the position free (a given cell of a puzzle is not)."""
    c = problem.constraint
    if c is None or c.mask is None:
        return torch.ones(y.shape[:-1], dtype=torch.bool, device=y.device)
    return ~c.mask.all(dim=-1)


def categorical_loss(problem: Problem, y: Tensor) -> Tensor:
    """Cross-entropy of the target classes, in nats, averaged over each instance's free positions."""
    scores = y.float()
    ce = torch.nn.functional.cross_entropy(
        scores.reshape(-1, scores.shape[-1]), problem.target.reshape(-1).long(), reduction="none"
    ).reshape(problem.target.shape)
    free = free_positions(problem, y).to(ce.dtype)
    total = per_instance_sum(ce * free, problem.segment, problem.num_instances)
    return total / per_instance_sum(free, problem.segment, problem.num_instances).clamp_min(1)
