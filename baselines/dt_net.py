"""DT-net with recall (Bansal, Schwarzschild et al. 2022, deep-thinking's `dt_net_recall_2d`): one
recurrent block applied as many times as the problem needs, trained with the progressive loss.

A 3 x 3 projection lifts the maze image to `width` channels (the initial thought); each iteration
concatenates the thought with the image (recall), applies a 3 x 3 convolution back to `width` and two
residual blocks (networks/maze.py), all weights shared over iterations; a head of three convolutions
reads two class scores per pixel from the thought. Training unrolls `max_iters` iterations (30 for
mazes) and takes the loss of the last output, plus, with weight `alpha` (0.01 for mazes), the
progressive loss: the thought after n random iterations (n uniform in 0..max_iters-1) is detached and
k more iterations (k uniform in 1..max_iters-n) are graded, so the block learns to improve any thought
it is handed rather than to count to max_iters. Loss = (1 - alpha) * full + alpha * progressive, both
cross-entropy over the open pixels (the task's loss, averaged per maze and then over the batch, where
deep-thinking averages over all open pixels of the batch). The detached thought is taken from the
full unroll itself (the same iterations, so the same tensor) rather than recomputed. At test time the
block runs for as many iterations as the budget asks, past max_iters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from irem.baselines.common import budget_predictions, check_sizes
from irem.networks.maze import BasicBlock, check_maze_input, head
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class DTNet(Predictor):
    def __init__(self, width: int = 128, max_iters: int = 30, alpha: float = 0.01, recall: bool = True) -> None:
        super().__init__()
        check_sizes("DTNet", width=width, max_iters=max_iters)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ValueError(f"DTNet: alpha (the progressive loss's weight) must be in [0, 1], got {alpha!r}.")
        if not isinstance(recall, bool):
            raise ValueError(f"DTNet: recall must be true or false, got {recall!r}.")
        self.width, self.max_iters, self.alpha, self.recall = width, max_iters, float(alpha), recall
        self.projection = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.ReLU())
        first = [nn.Conv2d(width + 3, width, 3, padding=1, bias=False)] if recall else []
        self.recur = nn.Sequential(*first, BasicBlock(width), BasicBlock(width))
        self.head = head(width)

    @property
    def default_budget(self) -> int:
        return self.max_iters

    def step(self, x: Tensor, thought: Tensor) -> Tensor:
        """One iteration of the recurrent block."""
        return self.recur(torch.cat([thought, x], dim=1) if self.recall else thought)

    def scores(self, problem: Problem, thought: Tensor) -> Tensor:
        """The head's two class scores [N, H, W, 2], walls kept off the path (the problem's constraint)."""
        y = self.head(thought).permute(0, 2, 3, 1)
        return y if problem.constraint is None else problem.constraint.apply(y)

    def thoughts(self, x: Tensor, iterations: int, thought: Tensor | None = None) -> Iterator[Tensor]:
        """The thought after 0, 1, ..., `iterations` iterations (from the projection unless given)."""
        thought = self.projection(x) if thought is None else thought
        yield thought
        for _ in range(iterations):
            thought = self.step(x, thought)
            yield thought

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        x = check_maze_input("DTNet", problem.x).float()
        n = int(torch.randint(0, self.max_iters, (1,), generator=generator))
        k = int(torch.randint(1, self.max_iters - n + 1, (1,), generator=generator))
        kept = None
        for t, thought in enumerate(self.thoughts(x, self.max_iters)):
            if t == n:
                kept = thought.detach()
        full = task.loss(problem, self.scores(problem, thought)).mean()
        if self.alpha == 0:
            return full, {"loss_full": float(full.detach())}
        *_, last = self.thoughts(x, k, kept)
        progressive = task.loss(problem, self.scores(problem, last)).mean()
        loss = (1 - self.alpha) * full + self.alpha * progressive
        return loss, {"loss_full": float(full.detach()), "loss_progressive": float(progressive.detach())}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="DTNet.predict")
        x = check_maze_input("DTNet", problem.x).float()
        iterates = (self.scores(problem, t) for t in self.thoughts(x, wanted[-1]))
        return budget_predictions(iterates, wanted, None)
