"""Annealed energy landscapes (IRED, Du et al. 2024): the noise schedule and the landscape embedding.

IRED trains K energy landscapes at once, landscape k seeing answers noised to the level of a
cosine diffusion schedule (k = K-1 the smoothest, k = 0 the sharpest), and solves by descending
them from the smoothest to the sharpest. The schedule is the one place that turns a landscape
index into its noise level, its descent step and its clamp, so the objective that trains the
landscapes (ired/objective.py) and the solver that descends them (ired/annealed.py) cannot
disagree. The embedding turns an index into a per-unit gain and bias (FiLM), how an energy
network becomes a family of landscapes with one set of weights.

Both work in answer units: landscape k scores sqrt(abar_k) * y, so descending it in y (rather
than in the scaled variable the reference code keeps) makes the fixed entries, the clamp and the
answer itself the same on every landscape, and moving between landscapes needs no rescaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from irem.energy import EnergyFunction
from irem.problem import per_row
from irem.schedules import cosine_betas

DEFAULT_LANDSCAPES = 10
DEFAULT_CLAMP = 2.0  # IRED's range for continuous answers; +-1 answers (Sudoku) use 1


@dataclass(frozen=True)
class LandscapeSchedule:
    """The cosine schedule of Nichol and Dhariwal (2021) over K landscapes, as IRED uses it.

    `alpha_bar[k]` is the signal kept at landscape k (near 1 at k = 0, near 0 at k = K-1);
    `step_size[k]` is IRED's inner-loop step, beta_k / sqrt(1 - abar_k), on the scaled variable.
    Each is computed once per schedule: the solver reads them at every energy evaluation.
    """

    landscapes: int = DEFAULT_LANDSCAPES
    offset: float = 0.008

    def __post_init__(self) -> None:
        if isinstance(self.landscapes, bool) or not isinstance(self.landscapes, int) or self.landscapes < 1:
            raise ValueError(f"LandscapeSchedule: landscapes must be a whole number >= 1, got {self.landscapes!r}.")

    @cached_property
    def betas(self) -> Tensor:
        return cosine_betas(self.landscapes, self.offset)

    @cached_property
    def alpha_bar(self) -> Tensor:
        return torch.cumprod(1 - self.betas, 0).float()

    @cached_property
    def step_size(self) -> Tensor:
        return (self.betas / torch.sqrt(1 - torch.cumprod(1 - self.betas, 0))).float()

    def signal(self, k: Tensor) -> Tensor:
        """sqrt(abar_k) for landscape indices `k` (any shape), on k's device."""
        return self.alpha_bar.to(k.device)[k].sqrt()

    def noise(self, k: Tensor) -> Tensor:
        """sqrt(1 - abar_k) for landscape indices `k`."""
        return (1 - self.alpha_bar.to(k.device)[k]).sqrt()

    def answer_step(self, k: Tensor | int, scale: float = 1.0) -> Tensor:
        """IRED's inner step on landscape k, expressed in answer units.

        A step s on the scaled variable z = sqrt(abar) y is a step s / abar on y (the gradient in y
        is sqrt(abar) times the gradient in z, and the move in y is 1/sqrt(abar) times the move in z).
        """
        k = torch.as_tensor(k)
        abar = self.alpha_bar.to(k.device)[k]
        return scale * self.step_size.to(k.device)[k] / abar

    def jump_step(self, k: Tensor | int) -> Tensor:
        """The step of IRED's denoising jump on landscape k, in answer units.

        The reference reads the energy's gradient as the noise and moves to the clean estimate,
        z - sqrt(1 - abar) * grad_z; in y that is a gradient step of sqrt(1 - abar) / abar.
        """
        k = torch.as_tensor(k)
        abar = self.alpha_bar.to(k.device)[k]
        return (1 - abar).sqrt() / abar


def spread_budget(total: int, landscapes: int) -> list[int]:
    """`total` descent steps spread over the landscapes, smoothest (index K-1) first: an equal
    share each, the remainder to the sharpest ones, where the answer is settled. Index k of the
    list is landscape k, so a budget below K leaves the smoothest landscapes without a step."""
    if total < 0 or landscapes < 1:
        raise ValueError(f"spread_budget: need total >= 0 and landscapes >= 1, got {total}, {landscapes}.")
    base, extra = divmod(int(total), int(landscapes))
    return [base + (1 if k < extra else 0) for k in range(landscapes)]


def sinusoidal(k: Tensor, dim: int) -> Tensor:
    """The transformer position code of index k, as IRED embeds its landscape index: [N, dim]."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=k.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    angle = k.float()[:, None] * freq[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class LandscapeEmbedding(nn.Module):
    """Landscape index -> a gain and a bias per unit of each conditioned layer (FiLM).

    A sinusoidal code goes through a small MLP (as IRED's time MLP) and one linear map per
    conditioned layer; a layer's output h becomes h * (1 + gain) + bias. The maps start at zero,
    so an untrained conditioned energy is the plain energy on every landscape.
    """

    def __init__(self, landscapes: int, widths: list[int], dim: int = 128) -> None:
        super().__init__()
        if landscapes < 1 or dim < 4:
            raise ValueError(f"LandscapeEmbedding: need landscapes >= 1 and dim >= 4, got {landscapes}, {dim}.")
        self.landscapes, self.dim = int(landscapes), int(dim)
        self.code = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.films = nn.ModuleList(nn.Linear(dim, 2 * w) for w in widths)
        for film in self.films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    def forward(self, k: Tensor | int, n: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
        """(gain, bias) per conditioned layer, each [n, width]; `k` one index or one per instance."""
        k = torch.as_tensor(k, device=device).long()
        if k.dim() == 0:
            k = k.expand(n)
        if k.shape != (n,):
            raise ValueError(
                f"a landscape index must be one int or one per instance ({n}), got shape {tuple(k.shape)}."
            )
        if bool(((k < 0) | (k >= self.landscapes)).any()):
            raise ValueError(
                f"landscape index out of range: this energy has {self.landscapes} landscapes (0 to "
                f"{self.landscapes - 1}), got {sorted(set(k.tolist()))[:5]}."
            )
        code = self.code(sinusoidal(k, self.dim))
        return [tuple(film(code).chunk(2, dim=-1)) for film in self.films]


class LandscapeView(EnergyFunction):
    """Landscape k of a landscape-conditioned energy, as a function of the answer y itself:
    E_k(x, sqrt(abar_k) * y). `k` is one index or one per instance (IRED's training draws one per
    example); `segment` maps answer rows to instances when an instance has several rows.

    The solvers' descent step (solvers/step.py) runs on the view unchanged, so accept-if-lower,
    the answer's constraint and the divergence checks are the ones every other solver uses. Not a
    registered submodule of anything: it holds the energy, not a copy of its weights.
    """

    def __init__(
        self, energy: EnergyFunction, schedule: LandscapeSchedule, k: int | Tensor, segment: Tensor | None = None
    ) -> None:
        super().__init__()
        object.__setattr__(self, "inner", energy)  # not a submodule: no second copy in any state dict
        self.schedule, self.k, self.segment = schedule, k, segment

    def prepare(self, x: Any) -> Any:
        return self.inner.prepare(x)

    def energy(self, x: Any, y: Tensor, step: int = 0) -> Tensor:  # noqa: ARG002  (the landscape is fixed)
        k = torch.as_tensor(self.k, device=y.device).long()
        signal = self.schedule.signal(k)
        scale = per_row(signal, y, self.segment) if k.dim() else signal
        return self.inner.energy(x, scale.to(y.dtype) * y, self.k)


def landscapes_of(energy: EnergyFunction) -> int:
    """How many annealed landscapes `energy` holds (0: an ordinary energy, whose `step` is not a
    landscape index)."""
    return int(getattr(energy, "landscapes", 0) or 0)
