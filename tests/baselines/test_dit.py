"""baselines/dit.py: the diffusion schedule on continuous time, DDIM from the observation's noise
level (exact with an oracle noise prediction), the one-pass direct denoiser, matched sizes with
the vision EBT, and tiny trainings that lower the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from irem.baselines.dit import DirectDenoiser, DiTDenoiser, timestep_features
from irem.cli import CONFIG_DIR
from irem.problem import Problem
from irem.tasks.images import ImageDenoising

SMALL = {"channels": 3, "image_size": 16, "patch": 4, "width": 32, "depth": 2, "heads": 2}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task() -> ImageDenoising:
    return ImageDenoising(size=16, stride=16, test_size=16, val_size=16)


def test_schedule_on_continuous_time() -> None:
    dit = DiTDenoiser(**SMALL, timesteps=100, beta_start=1e-3, beta_end=0.05)
    betas = torch.linspace(1e-3, 0.05, 100, dtype=torch.float64)
    cumulative = torch.cumprod(1 - betas, 0).float()
    torch.testing.assert_close(dit.abar(torch.arange(1.0, 101.0)), cumulative, rtol=1e-5, atol=1e-7)
    assert float(dit.abar(torch.zeros(1))) == 1.0
    # the time of pixel noise sigma is where (1 - abar) / abar = (2 sigma)^2 (pixels in [0, 1] -> [-1, 1])
    sigma = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.3])
    t = dit.time_of_sigma(sigma)
    assert (t[1:] > t[:-1]).all() and float(t[0]) == 0.0
    torch.testing.assert_close(dit.abar(t), 1 / (1 + (2 * sigma) ** 2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="beyond the schedule"):
        dit.time_of_sigma(torch.tensor([50.0]))


def test_ddim_with_an_oracle_noise_prediction_is_exact(task: ImageDenoising) -> None:
    """If the network predicted the true noise, every number of DDIM steps returns the clean image."""
    dit = DiTDenoiser(**SMALL)
    p = task.split("harder_0.3")
    z0 = p.target * 2 - 1

    def oracle(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = dit.abar(t).view(-1, 1, 1, 1)
        return (z - a.sqrt() * z0) / (1 - a).sqrt()

    dit.predict_noise = oracle
    for steps in (1, 3, 10):
        torch.testing.assert_close(dit.ddim(p.x, p.difficulty, steps), p.target, rtol=0, atol=1e-5)


def test_untrained_models_answer_the_observation(task: ImageDenoising) -> None:
    """Zero-initialised heads: DiT's first DDIM step and the direct denoiser return the input."""
    p = task.split("test")
    dit, direct = DiTDenoiser(**SMALL), DirectDenoiser(**SMALL)
    answers = dit.predict(task, p, [1, 3], gen(0)).answers
    assert set(answers) == {"1", "3"}
    torch.testing.assert_close(answers["1"], p.x.clamp(0, 1))
    out = direct.predict(task, p, [1, 5], gen(0)).answers
    torch.testing.assert_close(out["1"], p.x)
    assert out["1"] is out["5"]


def test_dit_needs_the_noise_level(task: ImageDenoising) -> None:
    p = task.split("test")
    with pytest.raises(ValueError, match="problem.difficulty"):
        DiTDenoiser(**SMALL).predict(task, Problem(x=p.x, target=p.target), [1], gen(0))
    with pytest.raises(ValueError, match=">= 1"):
        DiTDenoiser(**SMALL).predict(task, p, [0], gen(0))


def test_max_train_sigma_restricts_training_times() -> None:
    full, low = DiTDenoiser(**SMALL), DiTDenoiser(**SMALL, max_train_sigma=0.3)
    assert full.max_train_t == 1000.0
    assert float(low.abar(torch.tensor([low.max_train_t]))) == pytest.approx(1 / 1.36, rel=1e-4)


def test_timestep_features() -> None:
    f = timestep_features(torch.tensor([0.0, 1.0, 500.0]), 32)
    assert f.shape == (3, 32)
    torch.testing.assert_close(f[0], torch.cat([torch.ones(16), torch.zeros(16)]))


def test_configs_build_matched_sizes() -> None:
    """The shipped configs: EBT, DiT and direct denoiser within 5% of each other in parameters."""

    def build(group: str, name: str):
        cfg = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml")
        return instantiate(cfg, channels=3, image_size=32)

    counts = {
        name: sum(p.numel() for p in build(group, name).parameters())
        for group, name in (("energy", "vision"), ("baseline", "dit"), ("baseline", "direct_denoiser"))
    }
    assert min(counts.values()) >= 250_000 and max(counts.values()) <= 1_000_000, counts
    assert max(counts.values()) / min(counts.values()) < 1.05, counts


@pytest.mark.parametrize("kind", ["dit", "direct"])
def test_tiny_training_lowers_the_loss(task: ImageDenoising, kind: str) -> None:
    torch.manual_seed(0)
    model = DiTDenoiser(**SMALL) if kind == "dit" else DirectDenoiser(**SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(0)
    fixed = task.sample(64, gen(1))
    losses = []
    for _ in range(40):
        loss, _ = model.training_loss(task, task.sample(32, g), g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for _ in range(2):  # the same fixed batch and draws before and after, for a fair comparison
        losses.append(float(model.training_loss(task, fixed, gen(2))[0].detach()))
    with torch.no_grad():
        untrained = DiTDenoiser(**SMALL) if kind == "dit" else DirectDenoiser(**SMALL)
        before = float(untrained.training_loss(task, fixed, gen(2))[0])
    assert losses[0] == losses[1]
    assert losses[0] < 0.8 * before
