"""Solve A y = b: the README's example of plugging in a task (one file plus one config).

A = I + s * M / sqrt(n) with M ~ U(-1, 1); b ~ U(-1, 1). The coupling s is the difficulty: at
s = 0 the answer is b itself, and as s grows A drifts from the identity and worse conditioned.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irem.problem import Problem
from irem.task import Task, per_instance_level


class LinearSystem(Task):
    name = "linear_system"
    level_label = "coupling s"
    difficulty_label = "coupling s"

    def __init__(self, n: int = 8, difficulty: float = 0.5, harder_difficulty: float = 1.0, **split_args) -> None:
        if n < 1:
            raise ValueError(f"LinearSystem: n must be >= 1, got {n}.")
        self.n = n
        super().__init__(difficulty, harder_difficulty, **split_args)

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.n * self.n + self.n, "y_dim": self.n}

    def generate(self, count: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        s = per_instance_level(difficulty, count)
        m = torch.rand(count, self.n, self.n, generator=generator) * 2 - 1
        a = torch.eye(self.n) + s.view(-1, 1, 1) * m / self.n**0.5
        b = torch.rand(count, self.n, generator=generator) * 2 - 1
        y = torch.linalg.solve(a.double(), b.double()).float()
        return Problem(x=torch.cat([a.flatten(1), b], dim=1), target=y, difficulty=s)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        a = problem.x[:, : self.n * self.n].reshape(-1, self.n, self.n)
        b = problem.x[:, self.n * self.n :]
        residual = (a @ y.unsqueeze(-1)).squeeze(-1) - b
        return residual.abs().amax(dim=1) <= tol * (1 + b.abs().amax(dim=1)) * torch.linalg.cond(a)
