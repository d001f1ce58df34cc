"""A projection the solver owns (the problem's own constraint is applied after it, always)."""

from __future__ import annotations

from torch import Tensor

from irem.problem import Box, simplex_projection
from irem.solvers.transform import StepContext, Transform, finite, require

ONTO = ("box", "simplex")


class Project(Transform):
    """Each proposal projected onto a box [low, high] entry by entry, or onto the probability simplex
    along the answer's last dimension: a range the solver keeps its iterates in (IRED's clamp), on
    top of whatever the problem itself fixes or projects."""

    name = "project"

    def __init__(self, onto: str = "box", low: float = -1.0, high: float = 1.0) -> None:
        if onto not in ONTO:
            raise ValueError(f"Project: unknown onto '{onto}'. Valid choices: {', '.join(ONTO)}.")
        require(
            finite(low) and finite(high) and low <= high,
            "Project",
            "[low, high]",
            "finite with low <= high",
            (low, high),
        )
        self.onto, self.low, self.high = onto, float(low), float(high)
        self._box = Box(self.low, self.high)

    def move(self, proposal: Tensor, state: dict[str, Tensor], ctx: StepContext) -> Tensor:
        return self._box(proposal) if self.onto == "box" else simplex_projection(proposal)
