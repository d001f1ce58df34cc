"""EBT's random step sizes: each training solve draws a step multiplier per instance."""

from __future__ import annotations

import torch
from torch import Tensor

from irem.solvers.transform import Transform, finite, require


class RandomStepSize(Transform):
    """In a training solve, each instance's step is step_size times a factor drawn uniformly in
    [low, high] (EBT's System 2 recipe: [1/2, 2]), so the energy learns a landscape that many step
    sizes descend well and inference can take steps it was not trained with. Inference solves are
    left alone."""

    name = "random_step_size"

    def __init__(self, low: float = 0.5, high: float = 2.0) -> None:
        require(finite(low) and low > 0, "RandomStepSize", "low", "a finite number > 0", low)
        require(finite(high) and high >= low, "RandomStepSize", "high", f"a finite number >= low ({low})", high)
        self.low, self.high = float(low), float(high)

    def start(self, lr: Tensor, training: bool, generator: torch.Generator | None) -> Tensor:
        if not training:
            return lr
        device = generator.device if generator is not None else lr.device  # drawn where the generator lives
        draw = torch.rand(lr.shape[0], generator=generator, device=device, dtype=lr.dtype).to(lr.device)
        return self.low + (self.high - self.low) * draw
