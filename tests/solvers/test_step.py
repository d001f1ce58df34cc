"""solvers/step.py: the one descent step every loop shares (state, constraints, momentum restart).

The loops built on it are tested through their solvers (test_gradient_descent.py, test_adaptive.py,
test_best_of_n.py); these are the step's own pieces, and the answer constraint honoured by every
solver.
"""

from __future__ import annotations

import torch

from irem.solvers.step import DescentStep

DT = torch.float64


def test_restart_zeroes_the_velocity_of_instances_whose_gradient_points_along_it() -> None:
    velocity = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, -1.0]], dtype=DT)
    g = torch.tensor([[0.5, 9.0], [-1.0, -1.0], [1.0, 0.0], [1.0, 3.0]], dtype=DT)  # g.v: 0.5, -2, 0, 0
    out = DescentStep.restart_velocity(velocity, g, None, 4)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, -1.0]], dtype=DT))
    # segmented answers (graphs): the inner product is per instance, over all its rows
    segment = torch.tensor([0, 0, 1, 1])
    out = DescentStep.restart_velocity(velocity, g, segment, 2)
    torch.testing.assert_close(out[:2], velocity[:2])  # 0.5 - 2 < 0: kept
    torch.testing.assert_close(out[2:], velocity[2:])  # 0 + 0: kept
    out = DescentStep.restart_velocity(velocity, -g, segment, 2)
    torch.testing.assert_close(out[:2], torch.zeros(2, 2, dtype=DT))
    torch.testing.assert_close(out[2:], velocity[2:])
