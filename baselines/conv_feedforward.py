"""A feed-forward conv net for mazes: deep-thinking's layers applied once, each with its own weights.

The control for "does iterating help": a projection, `depth` residual blocks (networks/maze.py) and
the same head as DT-net (baselines/dt_net.py), one pass, the same answer at every budget. With width
30 and depth 3 it has about DT-net's parameters at width 32 (60.5k against 59.5k), so a difference is
the iteration, not the size. Fully convolutional: it reads mazes of any size, but its receptive field
is fixed (2 * depth * 2 + 4 convolutions of 3 x 3), so it cannot see a whole large maze.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from irem.baselines.common import check_sizes
from irem.networks.maze import BasicBlock, check_maze_input, head
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class ConvFeedForward(Predictor):
    def __init__(self, width: int = 30, depth: int = 3) -> None:
        super().__init__()
        check_sizes("ConvFeedForward", width=width, depth=depth)
        self.projection = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.ReLU())
        self.blocks = nn.Sequential(*(BasicBlock(width) for _ in range(depth)))
        self.head = head(width)

    def forward(self, problem: Problem) -> Tensor:
        x = check_maze_input("ConvFeedForward", problem.x).float()
        y = self.head(self.blocks(self.projection(x))).permute(0, 2, 3, 1)
        return y if problem.constraint is None else problem.constraint.apply(y)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        return task.loss(problem, self(problem)).mean(), {}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="ConvFeedForward.predict")
        with torch.no_grad():  # evaluation leaves autograd on (descent needs it); one pass does not
            y = self(problem)
        return Predictions(answers={str(b): y for b in wanted}, info={"steps_mean": {str(b): 1.0 for b in wanted}})
