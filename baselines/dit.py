"""Image denoisers the vision EBT (energies/vision.py) is compared with, on the same backbone.

`DiTDenoiser` is a Diffusion Transformer (Peebles & Xie 2023) trained as DDPM (epsilon
prediction, linear beta schedule over `timesteps`) and used as a denoiser the way the EBT paper
does: the noisy observation is read as a point on the diffusion path, and DDIM (eta = 0) runs from
that noise level down to a clean image. Pixels in [0, 1] are mapped to [-1, 1], so an observation
x = clean + sigma * noise is z = 2x - 1 = z0 + 2 sigma * noise; with s = 2 sigma that is the
diffusion state x_t = sqrt(abar) z at the (continuous) time t where (1 - abar) / abar = s^2. The
step budget is the number of DDIM steps, each one forward pass; one step is a one-shot prediction
of the clean image from the predicted noise. The noise level comes from the problem's
`difficulty` (the task's sigma per instance): DDIM needs it, the EBT is not given it.

`DirectDenoiser` is the same backbone with no time input, predicting the clean image in one pass
(as a residual on the observation), trained by MSE at the task's training noise; it answers the
same at every budget.

Both share `Backbone` with the EBT: patch embedding, 2-D sin-cos positions, adaLN-Zero blocks and a
zero-initialised head, which here writes patch * patch * channels pixels per patch. At
initialisation all three models answer the observation itself. The DiT's extra parameters are the
time-embedding MLP (2 x width^2); `benchmarks/vision_denoise.py` prints every count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irem.networks.vision import Backbone, check_images
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


def timestep_features(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features [N, dim] of continuous timesteps t [N] (DiT's TimestepEmbedder input)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class DiTDenoiser(Predictor):
    """DDPM-trained DiT; denoises by DDIM from the observation's noise level (budget = DDIM steps)."""

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        patch: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        max_train_sigma: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"DiTDenoiser: timesteps must be an integer >= 1, got {timesteps!r}.")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"DiTDenoiser: need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}.")
        if max_train_sigma is not None and max_train_sigma <= 0:
            raise ValueError(f"DiTDenoiser: max_train_sigma must be > 0 or null, got {max_train_sigma}.")
        self.channels, self.image_size, self.timesteps = channels, image_size, timesteps
        self.backbone = Backbone(
            channels, patch * patch * channels, image_size, patch, width, depth, heads, mlp_ratio, "DiTDenoiser"
        )
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        # log abar at t = 0, 1, ..., T (abar(0) = 1, a clean image); continuous t interpolates it
        log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])
        self.register_buffer("log_abar", log_abar.float(), persistent=False)
        # training draws t up to the time of `max_train_sigma` (null: the whole schedule, as DDPM does)
        self.max_train_t = (
            float(timesteps)
            if max_train_sigma is None
            else float(self.time_of_sigma(torch.tensor([max_train_sigma]))[0])
        )

    # -- the schedule on continuous time ------------------------------------------------------
    def abar(self, t: Tensor) -> Tensor:
        """abar(t) for continuous t in [0, T], log-linear between the integer steps."""
        t = t.clamp(0, self.timesteps)
        lo = t.floor().long().clamp(max=self.timesteps - 1)
        frac = t - lo.float()
        log = self.log_abar[lo] * (1 - frac) + self.log_abar[lo + 1] * frac
        return log.exp()

    def time_of_sigma(self, sigma: Tensor) -> Tensor:
        """The time t whose state sqrt(abar) (z0 + s * eps) matches pixel noise sigma (s = 2 sigma)."""
        target = -torch.log1p((2 * sigma.float()) ** 2)  # log abar = -log(1 + s^2)
        if bool((target < self.log_abar[-1]).any()):
            raise ValueError(
                f"DiTDenoiser: noise level {float(sigma.max()):.3g} is beyond the schedule's last step "
                f"(abar={float(self.log_abar[-1].exp()):.3g}); raise beta_end or timesteps."
            )
        # log_abar falls monotonically: find the interval, then interpolate inside it
        hi = torch.searchsorted(-self.log_abar, -target).clamp(1, self.timesteps)
        a, b = self.log_abar[hi - 1], self.log_abar[hi]
        return (hi - 1).float() + ((target - a) / (b - a)).clamp(0, 1)

    # -- the network ----------------------------------------------------------------------------
    def predict_noise(self, z: Tensor, t: Tensor) -> Tensor:
        """epsilon-hat for diffusion states z [N, C, S, S] at times t [N]."""
        c = self.time_mlp(timestep_features(t, self.backbone.width))
        return self.backbone.unpatchify(self.backbone(z, c), self.channels)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        """DDPM's simple loss on the clean targets; the task's own noisy x is not used."""
        z0 = check_images("DiTDenoiser", problem.target, self.channels, self.image_size, "target") * 2 - 1
        n = z0.shape[0]
        t = (1 - torch.rand(n, generator=generator)) * self.max_train_t  # (0, max_train_t]
        noise = torch.randn(z0.shape, generator=generator)
        t, noise = t.to(z0.device), noise.to(z0.device)
        abar = self.abar(t).view(n, 1, 1, 1)
        z = abar.sqrt() * z0 + (1 - abar).sqrt() * noise
        return F.mse_loss(self.predict_noise(z, t), noise), {}

    def ddim(self, x: Tensor, sigma: Tensor, steps: int) -> Tensor:
        """Denoise observations x ([0, 1] pixels plus noise sigma [N]) in `steps` DDIM steps from the
        observation's noise level to t = 0, evenly spaced in time; returns [0, 1]-scale images."""
        t_start = self.time_of_sigma(sigma.to(x.device))
        z = self.abar(t_start).sqrt().view(-1, 1, 1, 1) * (2 * x - 1)
        fractions = torch.linspace(1, 0, steps + 1, device=x.device)
        z0 = z
        for i in range(steps):
            t, t_next = t_start * fractions[i], t_start * fractions[i + 1]
            a = self.abar(t).view(-1, 1, 1, 1)
            a_next = self.abar(t_next).view(-1, 1, 1, 1)
            eps = self.predict_noise(z, t)
            z0 = ((z - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            z = a_next.sqrt() * z0 + (1 - a_next).sqrt() * eps
        return (z0 + 1) / 2

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, minimum=1, owner="DiTDenoiser.predict")
        x = check_images("DiTDenoiser", problem.x, self.channels, self.image_size, "observed")
        if problem.difficulty is None:
            raise ValueError(
                f"DiTDenoiser starts DDIM at the observation's noise level, read from problem.difficulty; task "
                f"'{task.name}' gave none."
            )
        with torch.no_grad():  # evaluation leaves autograd on for descent; sampling needs none
            answers = {str(b): self.ddim(x.float(), problem.difficulty, b) for b in wanted}
        return Predictions(answers=answers, info={"steps_mean": {str(b): float(b) for b in wanted}})


class DirectDenoiser(Predictor):
    """The shared backbone as a one-pass denoiser: clean = observation + predicted correction."""

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        patch: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.channels, self.image_size = channels, image_size
        self.backbone = Backbone(
            channels, patch * patch * channels, image_size, patch, width, depth, heads, mlp_ratio, "DirectDenoiser"
        )
        self.context = nn.Parameter(torch.zeros(width))  # c: one learned vector, as the EBT has
        nn.init.normal_(self.context, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = check_images("DirectDenoiser", x, self.channels, self.image_size, "observed").float()
        z = 2 * x - 1
        correction = self.backbone.unpatchify(self.backbone(z, self.context.expand(x.shape[0], -1)), self.channels)
        return (z + correction + 1) / 2

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        return task.loss(problem, self(problem.x)).mean(), {}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="DirectDenoiser.predict")
        with torch.no_grad():
            y = self(problem.x)
        return Predictions(answers={str(b): y for b in wanted}, info={"steps_mean": {str(b): 1.0 for b in wanted}})
