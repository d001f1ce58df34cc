"""IREM's continuous matrix tasks: addition, inverse and low-rank completion.

Distributions follow the paper (see REFERENCES.md); each has one continuous difficulty knob that
may differ per instance, and the matrix size `size` (20 in the paper). Everything is generated in
whole batches. Answers are flattened to size*size values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from irem.problem import AnswerConstraint, Problem
from irem.task import Task, per_instance_level


class MatrixTask(Task):
    """Shared plumbing: flat x of `x_per_matrix` matrices, flat y of one matrix.

    `train_range` = [lo, hi] trains on a mixture: each instance of a training batch draws its
    difficulty log-uniformly in [lo, hi] instead of the fixed `difficulty` (the splits keep theirs).
    Adaptive-compute studies need a model trained across the difficulties it is tested on.
    """

    x_matrices: int = 1

    def __init__(
        self, size: int = 20, train_range: list[float] | tuple[float, float] | None = None, **split_args
    ) -> None:
        if size < 1:
            raise ValueError(f"{type(self).__name__}: size must be >= 1, got {size}.")
        self.size = int(size)
        if train_range is not None:
            bounds = [float(v) for v in train_range]
            if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
                raise ValueError(
                    f"{type(self).__name__}: train_range must be [lo, hi] with 0 < lo <= hi, got {bounds}."
                )
            train_range = (bounds[0], bounds[1])
        self.train_range = train_range
        super().__init__(**split_args)

    def training_difficulty(self, n: int, generator: torch.Generator) -> float | Tensor:
        if self.train_range is None:
            return self.difficulty
        lo, hi = self.train_range
        u = torch.rand(n, generator=generator)
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.x_matrices * self.size**2, "y_dim": self.size**2}

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, self.size**2)


class Addition(MatrixTask):
    """A, B ~ U(-s, s); target A + B. Difficulty s: 1 in training, 2.5 harder."""

    name = "addition"
    study_levels = (0.5, 1.0, 2.5, 5.0)
    level_label = "input scale"
    difficulty_label = "input scale"
    x_matrices = 2

    def __init__(self, size: int = 20, difficulty: float = 1.0, harder_difficulty: float = 2.5, **split_args) -> None:
        super().__init__(size, difficulty=difficulty, harder_difficulty=harder_difficulty, **split_args)

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        s = per_instance_level(difficulty, n)
        ab = (torch.rand(n, 2, self.size, self.size, generator=generator) * 2 - 1) * s.view(n, 1, 1, 1)
        target = (ab[:, 0] + ab[:, 1]).reshape(n, -1)
        return Problem(x=ab.reshape(n, -1), target=target, difficulty=s)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        a, b = problem.x.reshape(-1, 2, self.size**2).unbind(1)
        return ((y - (a + b)).abs() <= tol * (1 + (a + b).abs())).all(dim=1)


class Inverse(MatrixTask):
    """A = 2 R R^T + c I with R ~ U(-1, 1); target A^-1.

    The knob is the diagonal shift c (0.5 in training, 0.1 harder): a smaller c gives a worse
    conditioned A. The per-instance difficulty recorded is the condition number, the quantity
    studies should cut by.
    """

    name = "inverse"
    study_levels = (1.0, 0.5, 0.2, 0.1, 0.05)
    level_label = "diagonal shift c"
    difficulty_label = "condition number"

    def __init__(self, size: int = 20, difficulty: float = 0.5, harder_difficulty: float = 0.1, **split_args) -> None:
        super().__init__(size, difficulty=difficulty, harder_difficulty=harder_difficulty, **split_args)

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        return self._generate(n, difficulty, generator, measure=True)

    def sample(self, n: int, generator: torch.Generator, difficulty: float | Tensor | None = None) -> Problem:
        """A training batch: `generate`'s x and target, with no condition number (difficulty None).

        Nothing in training reads a batch's difficulty, and the eigenvalues behind it took ~4%
        of a training iteration (benchmarks/train_step.py). The shift c stays in `info`.
        """
        level = self.training_difficulty(n, generator) if difficulty is None else difficulty
        return self._generate(n, level, generator, measure=False)

    def _generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator, measure: bool) -> Problem:
        c = per_instance_level(difficulty, n)
        if bool((c <= 0).any()):
            raise ValueError("Inverse: the diagonal shift c must be > 0 (otherwise A may be singular).")
        r = torch.rand(n, self.size, self.size, generator=generator) * 2 - 1
        eye = torch.eye(self.size)
        a = 2 * r @ r.transpose(1, 2) + c.view(n, 1, 1) * eye
        # A is symmetric positive definite (c > 0), so its inverse comes from a Cholesky factor
        # and its 2-norm condition number is lambda_max / lambda_min from eigvalsh: the same
        # quantities as linalg.inv / linalg.cond (equal after the cast to float32 but for a rare
        # last-bit difference) at about half the cost of LU + SVD, which took ~5% of a training
        # iteration. An A that is not numerically positive definite (a shift c far below 1e-5)
        # falls back to LU / SVD for those instances.
        a64 = a.double()
        chol, info = torch.linalg.cholesky_ex(a64)
        inverse = torch.cholesky_inverse(chol)
        bad = info != 0
        cond = None
        if measure:
            eig = torch.linalg.eigvalsh(a64)
            cond = eig[:, -1] / eig[:, 0]
            bad |= eig[:, 0] <= 0
        if bool(bad.any()):
            inverse[bad] = torch.linalg.inv(a64[bad])
            if cond is not None:
                cond[bad] = torch.linalg.cond(a64[bad])
        target = inverse.float().reshape(n, -1)
        difficulty = None if cond is None else cond.float()
        return Problem(x=a.reshape(n, -1), target=target, difficulty=difficulty, info={"shift": c})

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """A @ Y = I, with the residual scaled by the condition number."""
        n = problem.num_instances
        a = problem.x.reshape(n, self.size, self.size).double()
        residual = a @ y.reshape(n, self.size, self.size).double() - torch.eye(self.size, dtype=torch.float64)
        cond = torch.linalg.cond(a)
        return residual.abs().amax(dim=(1, 2)) <= tol * cond


class LowRank(MatrixTask):
    """Complete R = 0.1 N(0,1) + U V^T / d from R * mask, ~50% of entries kept.

    U, V ~ N(0, 1) of size x size/2. The knob is the divisor d (20 in training, 5 harder): a
    smaller d makes the low-rank part larger against the noise.

    `clamp_observed`: the observed entries are known, so the answer keeps them fixed (an
    `AnswerConstraint` on every problem; every solver leaves them at their values) and descent
    only completes the rest. Off by default, as IREM has it: the energy must then learn to
    reproduce them.
    """

    name = "lowrank"
    study_levels = (40.0, 20.0, 10.0, 5.0)
    level_label = "divisor d"
    difficulty_label = "low-rank magnitude 1/d"

    def __init__(
        self,
        size: int = 20,
        difficulty: float = 20.0,
        harder_difficulty: float = 5.0,
        keep: float = 0.5,
        clamp_observed: bool = False,
        **split_args,
    ) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"LowRank: keep must be in (0, 1], got {keep}.")
        self.keep = float(keep)
        self.clamp_observed = bool(clamp_observed)
        super().__init__(size, difficulty=difficulty, harder_difficulty=harder_difficulty, **split_args)

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        d = per_instance_level(difficulty, n)
        if bool((d <= 0).any()):
            raise ValueError("LowRank: the divisor d must be > 0.")
        k = max(self.size // 2, 1)
        u = torch.randn(n, self.size, k, generator=generator)
        v = torch.randn(n, self.size, k, generator=generator)
        noise = 0.1 * torch.randn(n, self.size, self.size, generator=generator)
        r = noise + u @ v.transpose(1, 2) / d.view(n, 1, 1)
        mask = (torch.rand(n, self.size, self.size, generator=generator) < self.keep).float()
        x, observed = (r * mask).reshape(n, -1), mask.reshape(n, -1)
        constraint = AnswerConstraint(mask=observed.bool(), values=x) if self.clamp_observed else None
        return Problem(x=x, target=r.reshape(n, -1), difficulty=1.0 / d, info={"mask": observed}, constraint=constraint)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """Observed entries must be reproduced; the completion must have rank <= size/2 + noise.

        The noise term makes R full rank, so the check on unobserved entries is the observed
        consistency alone; exact recovery is judged by `metrics` against the target.
        """
        mask = problem.info["mask"].bool()
        diff = (y - problem.x).abs().masked_fill(~mask, 0)
        return (diff <= tol * (1 + problem.x.abs())).all(dim=1)
