"""Accept-if-lower: a step is kept only where it lowers the energy, and shrinks where it does not."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from irem.problem import Status
from irem.solvers.transform import Transform, finite, require


class AcceptIfLower(Transform):
    """Keep an instance's proposal only when its energy is lower than the current one; otherwise stay
    and multiply that instance's step by `shrink` (a backtracking line search spread over the steps).
    A non-finite proposal (a step too long can overflow) is only rejected, and the shrunk step may
    land on finite ground; an instance whose energy is not finite even where it stands has diverged,
    since no step size can bring it back (asked only when a proposal failed)."""

    name = "accept_if_lower"

    def __init__(self, shrink: float = 0.5) -> None:
        require(finite(shrink) and 0 < shrink <= 1, "AcceptIfLower", "shrink", "in (0, 1]", shrink)
        self.shrink = float(shrink)

    def accept(
        self,
        s,
        e_new: Tensor,
        finite_new: Tensor,
        all_finite: bool,
        evaluated: bool,
        diverged_here: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, bool]:
        """(the instances that move, whether all of them do); shrinks the others' steps in `s`."""
        accept = s.active & finite_new & (e_new < s.e)
        if evaluated and not all_finite:
            s.stop(diverged_here(s.active & ~finite_new), Status.DIVERGED)
        s.lr = torch.where(s.active & ~accept, s.lr * self.shrink, s.lr)
        return accept, bool(accept.all())
