"""Sort n numbers: the answer is the sorting permutation matrix, each row on the probability simplex.

Row r of the answer is a distribution over the n input positions, and the truth puts all its mass
on the position holding the r-th smallest number. The rows are kept on the simplex by the problem's
projection (`AnswerConstraint(project=simplex_projection)`), so every solver, and since it is
applied to their answers every baseline, answers with rows that are distributions. This is the kind
of task a projection makes: the answer's geometry is in the problem, not in the energy.

The difficulty is the spread of the numbers: they are drawn in [-s, s], so a smaller s puts them
closer together and the order is harder to read off the input scale an energy sees.
"""

from __future__ import annotations

import torch
from torch import Tensor

from irem.problem import AnswerConstraint, Problem, simplex_projection
from irem.task import Task, per_instance_level


class Permutation(Task):
    name = "permutation"
    level_label = "spread s"
    difficulty_label = "spread s"
    error_metric = "permutation_accuracy"
    higher_is_better = frozenset({"row_accuracy", "permutation_accuracy"})

    def __init__(self, n: int = 8, difficulty: float = 1.0, harder_difficulty: float = 0.25, **split_args) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"Permutation: n must be a whole number >= 2 (numbers to sort), got {n!r}.")
        self.n = n
        super().__init__(difficulty, harder_difficulty, **split_args)

    def dims(self) -> dict[str, int]:
        return {"x_dim": self.n, "y_dim": self.n * self.n}

    def generate(self, count: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        s = per_instance_level(difficulty, count)
        x = (torch.rand(count, self.n, generator=generator) * 2 - 1) * s.view(-1, 1)
        order = x.argsort(dim=1)  # order[i, r]: the position of the r-th smallest number
        target = torch.nn.functional.one_hot(order, self.n).float()
        return Problem(x=x, target=target, difficulty=s, constraint=AnswerConstraint(project=simplex_projection))

    def init_answer(self, problem: Problem, generator: torch.Generator) -> Tensor:
        """Every row uniform, plus a little noise so starts differ: the centre of the simplex, where
        no position is favoured yet."""
        n = self.n
        noise = (torch.rand(problem.num_instances, n, n, generator=generator) * 2 - 1) * (0.1 / n)
        return simplex_projection(torch.full((problem.num_instances, n, n), 1.0 / n) + noise)

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, self.n, self.n)

    def decode(self, problem: Problem, y: Tensor) -> Tensor:
        """The position each rank takes: the most likely one of each row."""
        return y.argmax(dim=-1)

    def check(self, problem: Problem, y: Tensor) -> Tensor:
        """The decoded rows are a permutation that puts the numbers in increasing order (ties, which a
        continuous draw almost never makes, in either order)."""
        picks = self.decode(problem, y)
        is_permutation = picks.sort(dim=1).values.eq(torch.arange(self.n, device=picks.device)).all(dim=1)
        ordered = problem.x.gather(1, picks)
        increasing = (ordered[:, 1:] >= ordered[:, :-1]).all(dim=1)
        finite = torch.isfinite(y).flatten(1).all(dim=1)
        return is_permutation & increasing & finite

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        y = y.detach()
        rows = self.decode(problem, y).eq(problem.target.argmax(dim=-1)).float()
        return {
            "mse": self.loss(problem, y),
            "row_accuracy": rows.mean(dim=1),
            "permutation_accuracy": self.check(problem, y).float(),
        }
