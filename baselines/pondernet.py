"""PonderNet (Banino et al., 2021): a recurrent cell that learns when to stop.

The baseline for adaptive computation without an energy. Each step n gives an answer y_n and a
halting probability lambda_n; the loss weighs every step's task loss by the probability of
halting there, plus a KL pull towards a geometric prior on the number of steps. The released IREM
PonderNet crashed; `ponder_loss` is the halting-weighted loss written out so a test can check it
against a hand computation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irem.baselines.common import answer_shape, check_sizes, flat_input
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task

HALT_THRESHOLD = 0.5


def halting_log_distribution(halt_logits: Tensor) -> Tensor:
    """log p_n = log lambda_n + sum_{j<n} log(1 - lambda_j), the last step taking what is left.

    `halt_logits` is [steps, ...]. Working in logs (logsigmoid) keeps the probability of halting
    late finite however confident early steps are, and letting the last step absorb the remaining
    mass makes p a distribution over the unrolled steps (sum 1), as the KL term needs; the last
    step's own logit is therefore unused here.
    """
    log_continue = F.logsigmoid(-halt_logits)
    reach = torch.cat([torch.zeros_like(log_continue[:1]), log_continue[:-1].cumsum(dim=0)])
    return torch.cat([reach[:-1] + F.logsigmoid(halt_logits[:-1]), reach[-1:]])


def geometric_log_prior(lambda_p: float, steps: int, device: torch.device | None = None) -> Tensor:
    """log of the geometric(lambda_p) prior truncated to `steps` steps and renormalised."""
    n = torch.arange(steps, dtype=torch.float64)  # double on the CPU: some accelerators lack it
    log_q = math.log(lambda_p) + n * math.log1p(-lambda_p)
    return (log_q - torch.logsumexp(log_q, dim=0)).to(device=device, dtype=torch.float32)


def ponder_loss(
    step_losses: Tensor, halt_logits: Tensor, lambda_p: float, beta: float
) -> tuple[Tensor, dict[str, float]]:
    """mean_i [ sum_n p_{n,i} L_{n,i} + beta KL(p_i || geometric prior) ].

    `step_losses` and `halt_logits` are [steps, N]: the task loss of each step's answer and the
    halting logit of each step, per instance.
    """
    if step_losses.shape != halt_logits.shape:
        raise ValueError(
            f"ponder_loss: step_losses {tuple(step_losses.shape)} and halt_logits "
            f"{tuple(halt_logits.shape)} must both be [steps, N]."
        )
    log_p = halting_log_distribution(halt_logits)
    p = log_p.exp()
    log_q = geometric_log_prior(lambda_p, halt_logits.shape[0], halt_logits.device).view(-1, 1)
    reconstruction = (p * step_losses).sum(dim=0)
    kl = (p * (log_p - log_q)).sum(dim=0)
    loss = (reconstruction + beta * kl).mean()
    n = torch.arange(1, halt_logits.shape[0] + 1, dtype=p.dtype, device=p.device).view(-1, 1)
    logs = {
        "reconstruction": float(reconstruction.detach().mean()),
        "kl": float(kl.detach().mean()),
        "expected_steps": float((p.detach() * n).sum(dim=0).mean()),
    }
    return loss, logs


class PonderNet(Predictor):
    """GRUCell(hidden) fed x every step; linear heads give y_n and the halting logit of step n.

    Training unrolls `max_steps` steps. Prediction may run further: there the halting rule uses
    the heads alone (no forced stop at `max_steps`), so an instance that never grew confident can
    keep computing when a larger budget allows it.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden: int = 512,
        max_steps: int = 10,
        lambda_p: float = 0.2,
        beta: float = 0.01,
    ) -> None:
        super().__init__()
        check_sizes("PonderNet", x_dim=x_dim, y_dim=y_dim, hidden=hidden, max_steps=max_steps)
        if not 0 < lambda_p < 1:
            raise ValueError(
                f"PonderNet: lambda_p (the prior's halting probability) must be in (0, 1), got {lambda_p}."
            )
        if not beta >= 0:
            raise ValueError(f"PonderNet: beta (the KL weight) must be >= 0, got {beta}.")
        self.x_dim, self.y_dim, self.hidden, self.max_steps = x_dim, y_dim, hidden, max_steps
        self.lambda_p, self.beta = float(lambda_p), float(beta)
        self.cell = nn.GRUCell(x_dim, hidden)
        self.output = nn.Linear(hidden, y_dim)
        self.halt = nn.Linear(hidden, 1)

    @property
    def default_budget(self) -> int:
        return self.max_steps

    def iterate(self, x: Tensor, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(flat answer y_n, halting logit of step n) for n = 1..`steps`, lazily."""
        h = x.new_zeros(x.shape[0], self.hidden)
        for _ in range(steps):
            h = self.cell(x, h)
            yield self.output(h), self.halt(h).squeeze(-1)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        shape = answer_shape("PonderNet", self.y_dim, task, problem)
        x = flat_input("PonderNet", self.x_dim, task, problem)
        ys, logits = zip(*self.iterate(x, self.max_steps), strict=True)
        step_losses = torch.stack([task.loss(problem, y.reshape(shape)) for y in ys])
        return ponder_loss(step_losses, torch.stack(logits), self.lambda_p, self.beta)

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        """Halt at the first step whose cumulative halting probability exceeds 1/2, or at the budget.

        Deterministic, so evaluation needs no sampling; an instance's answer is the one it gave at
        the step it halted, and `info["steps_mean"]` is the mean halting step per budget.
        """
        wanted = check_budgets(budgets, minimum=1, owner="PonderNet.predict")
        shape = answer_shape("PonderNet", self.y_dim, task, problem)
        keep = set(wanted)
        answers: dict[str, Tensor] = {}
        steps: dict[str, Tensor] = {}
        # Evaluation leaves autograd on (descent needs it); a direct predictor does not.
        with torch.no_grad():
            x = flat_input("PonderNet", self.x_dim, task, problem)
            n_inst = x.shape[0]
            halted = torch.zeros(n_inst, dtype=torch.bool, device=x.device)
            halt_step = torch.zeros(n_inst, dtype=torch.long, device=x.device)
            chosen = x.new_zeros(n_inst, self.y_dim)
            log_continue = x.new_zeros(n_inst)
            for n, (y, logit) in enumerate(self.iterate(x, wanted[-1]), start=1):
                log_continue = log_continue + F.logsigmoid(-logit)
                stop = ~halted & (-torch.expm1(log_continue) > HALT_THRESHOLD)
                chosen = torch.where(stop.unsqueeze(-1), y, chosen)
                halt_step = torch.where(stop, n, halt_step)
                halted = halted | stop
                if n in keep:
                    answers[str(n)] = torch.where(halted.unsqueeze(-1), chosen, y).reshape(shape)
                    steps[str(n)] = torch.where(halted, halt_step, n)
        info = {"halt_step": steps, "steps_mean": {b: float(s.float().mean()) for b, s in steps.items()}}
        return Predictions(answers=answers, info=info)
