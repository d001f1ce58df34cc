"""IRED's training objective (objective=ired): denoise each landscape and rank the truth below a negative.

IRED (Du, Mao, Tenenbaum, ICML 2024) trains a family of K energy landscapes (ired/landscapes.py)
with no descent to differentiate through. Each example draws one landscape k and its truth is
noised to that landscape's level, z = sqrt(abar_k) y* + sqrt(1 - abar_k) eps. The denoising term
asks the energy's gradient at z to be the noise eps (as a diffusion model's noise prediction),
so every landscape's gradient points back towards the truth from where that much noise puts it.
The contrastive term is a cross-entropy over -[E(positive), E(negative)]: the positive is the
noised truth, the negative the same noise on a wrong answer, either the task's corruption
(`Task.corrupt`: a few wrong cells of a Sudoku) or a truth noised three times as much and moved
by two accept-if-lower steps on its landscape, then clamped (continuous answers). Fixed entries
are kept at their values throughout. The negative's descent is the one loop (solvers/loop.py)
with IRED's landscape step, each instance on its own landscape, so the negative is where the
inference solver would go.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from irem.energy import EnergyFunction, describe
from irem.errors import SettingError
from irem.ired.annealed import clamped, landscape_step
from irem.ired.landscapes import DEFAULT_CLAMP, LandscapeSchedule, LandscapeView, landscapes_of
from irem.objective import Objective, ObjectiveResult, TrainingBatch
from irem.problem import AnswerConstraint, Problem, per_instance_mean, per_row
from irem.solver import Solver, SolveRequest
from irem.solvers.loop import Phase, descend
from irem.task import Task


@runtime_checkable
class Corrupts(Protocol):
    """What a task defines to give IRED's contrast its own wrong answers: one near `y` (the truth in
    the answer's layout), or None to let the objective descend a heavily noised truth."""

    def corrupt(self, problem: Problem, y: Tensor, generator: torch.Generator) -> Tensor | None: ...


def corrupted(task: Task, problem: Problem, y: Tensor, generator: torch.Generator, fraction: float) -> Tensor | None:
    """The wrong answer IRED contrasts with `y`: the task's own (`Corrupts`); for a categorical answer
    a random class at `fraction` of the positions, as IRED corrupts Sudoku boards (the objective
    re-applies fixed entries after); for a continuous one None (a descended noised truth instead)."""
    if isinstance(task, Corrupts):
        return task.corrupt(problem, y, generator)
    if task.answer_kind != "categorical":
        return None
    classes = y.shape[-1]
    current = y.argmax(dim=-1)
    hit = torch.rand(current.shape, generator=generator).to(y.device) < fraction
    random = torch.randint(0, classes, current.shape, generator=generator).to(y.device)
    labels = torch.where(hit, random, current)
    return y.abs().amax() * (torch.nn.functional.one_hot(labels, classes).to(y.dtype) * 2 - 1)


def with_fixed(z: Tensor, constraint: AnswerConstraint | None, signal: Tensor) -> Tensor:
    """`z` with the fixed entries at their values scaled to the landscape (noise-free, as IRED)."""
    if constraint is None or constraint.mask is None:
        return z
    return torch.where(constraint.mask, signal * constraint.values.to(z.dtype), z)


class IREDObjective(Objective):
    """Denoising plus `contrast_weight` times the contrastive term (IRED: 0.5 continuous, 0.05 Sudoku).

    `negative_noise`: how much more noise the descended negative starts from (IRED: 3);
    `negative_steps`: its accept-if-lower steps (IRED: 2); `clamp`: the answers' range (IRED: 2
    continuous, 1 for +-1 answers); `corrupt_fraction`: the share of a categorical answer's
    positions its negative gives a random class (IRED: 5% of Sudoku cells).
    """

    def __init__(
        self,
        contrast_weight: float = 0.5,
        negative_noise: float = 3.0,
        negative_steps: int = 2,
        clamp: float | None = DEFAULT_CLAMP,
        corrupt_fraction: float = 0.05,
    ) -> None:
        if not (math.isfinite(contrast_weight) and contrast_weight >= 0):
            raise ValueError(f"IREDObjective: contrast_weight must be a finite number >= 0, got {contrast_weight}.")
        if not (math.isfinite(negative_noise) and negative_noise > 0):
            raise ValueError(f"IREDObjective: negative_noise must be a finite number > 0, got {negative_noise}.")
        if isinstance(negative_steps, bool) or not isinstance(negative_steps, int) or negative_steps < 0:
            raise ValueError(f"IREDObjective: negative_steps must be a whole number >= 0, got {negative_steps!r}.")
        if clamp is not None and not (math.isfinite(clamp) and clamp > 0):
            raise ValueError(f"IREDObjective: clamp must be null (no clamp) or a number > 0, got {clamp}.")
        self.contrast_weight = float(contrast_weight)
        self.negative_noise = float(negative_noise)
        self.negative_steps = int(negative_steps)
        if not (math.isfinite(corrupt_fraction) and 0 <= corrupt_fraction <= 1):
            raise ValueError(f"IREDObjective: corrupt_fraction must be in [0, 1], got {corrupt_fraction}.")
        self.clamp = None if clamp is None else float(clamp)
        self.corrupt_fraction = float(corrupt_fraction)

    def check_energy(self, energy: EnergyFunction) -> None:
        if landscapes_of(energy) == 0:
            raise SettingError(
                f"objective=ired trains a family of annealed landscapes, but {describe(energy)} has none "
                "(energy.landscapes=0): give it some, e.g. energy.landscapes=10 (IRED's count), with an energy that "
                "takes landscapes (mlp, gnn, sudoku_conv)."
            )

    def loss(
        self, task: Task, energy: EnergyFunction, solver: Solver, batch: TrainingBatch, generator: torch.Generator
    ) -> ObjectiveResult:
        self.check_energy(energy)
        K = landscapes_of(energy)
        schedule = LandscapeSchedule(K)
        problem = batch.fresh  # true pairs: replayed iterates play no part in IRED
        y_star = task.target_answer(problem).float()
        n, segment, device = problem.num_instances, problem.segment, y_star.device
        k = torch.randint(0, K, (n,), generator=generator).to(device)
        signal = per_row(schedule.signal(k), y_star, segment)
        sigma = per_row(schedule.noise(k), y_star, segment)
        with torch.enable_grad():
            x = energy.prepare(problem.x)

        denoise = self.denoising(energy, x, problem, y_star, k, signal, sigma, generator)
        eps = torch.randn(y_star.shape, generator=generator).to(device)
        positive = with_fixed(signal * y_star + sigma * eps, problem.constraint, signal)
        negative = self.negative(task, energy, x, problem, y_star, k, schedule, eps, generator)
        negative = with_fixed(signal * negative + sigma * eps, problem.constraint, signal)
        e_pos, e_neg = energy.energy(x, positive, k), energy.energy(x, negative, k)
        contrast = torch.nn.functional.softplus(e_pos - e_neg)  # cross-entropy over -[E+, E-], target E+
        loss = denoise.mean() + self.contrast_weight * contrast.mean()
        logs = {
            "denoise": float(denoise.detach().mean()),
            "contrast": float(contrast.detach().mean()),
            "ranked": float((e_pos.detach() < e_neg.detach()).float().mean()),
        }
        return ObjectiveResult(loss=loss, result=None, logs=logs)

    @staticmethod
    def denoising(
        energy: EnergyFunction,
        x: object,
        problem: Problem,
        y_star: Tensor,
        k: Tensor,
        signal: Tensor,
        sigma: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """Per instance: mean over entries of (dE_k/dz at the noised truth z - the noise)^2; zero at
        fixed entries, which carry no noise."""
        eps = torch.randn(y_star.shape, generator=generator).to(y_star.device)
        z = with_fixed(signal * y_star + sigma * eps, problem.constraint, signal).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(energy.energy(x, z, k).sum(), z, create_graph=True)
        error = (grad - eps) ** 2
        if problem.constraint is not None and problem.constraint.mask is not None:
            error = error.masked_fill(problem.constraint.mask, 0)
        return per_instance_mean(error, problem.segment, problem.num_instances)

    def negative(
        self,
        task: Task,
        energy: EnergyFunction,
        x: object,
        problem: Problem,
        y_star: Tensor,
        k: Tensor,
        schedule: LandscapeSchedule,
        eps: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """The wrong answer, in answer units: the task's corruption, or a heavily noised truth
        descended on its own landscape and clamped."""
        wrong = corrupted(task, problem, y_star, generator, self.corrupt_fraction)
        if wrong is not None:
            return wrong.detach().to(y_star.dtype)
        segment = problem.segment
        # z = sqrt(abar) y* + 3 sqrt(1 - abar) eps, in answer units z / sqrt(abar)
        ratio = per_row(schedule.noise(k) / schedule.signal(k), y_star, segment)
        start = y_star + self.negative_noise * ratio * eps
        constraint = clamped(problem.constraint, self.clamp)
        view = LandscapeView(energy, schedule, k, segment)
        step = landscape_step(torch.ones((), device=y_star.device), accept_if_lower=True)
        phase = Phase(view, step, self.negative_steps, lr=schedule.answer_step(k))  # each on its own landscape
        request = SolveRequest(segment=segment, constraint=constraint)
        x_fixed = x.detach() if isinstance(x, Tensor) else x
        result = descend([phase], x_fixed, start.detach(), request, budget=self.negative_steps, prepared=True)
        y = result.y.detach()
        return y if self.clamp is None else y.clamp(-self.clamp, self.clamp)
