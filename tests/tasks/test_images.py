"""tasks/images.py: held-out whole images, noise levels as splits, the descent starts, the noise-
consistency check and PSNR against values worked out by hand. (The shared task tests in
test_tasks.py cover determinism, split seeds and shapes.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irem.problem import Problem
from irem.tasks.images import SKIMAGE_PHOTOS, ImageDenoising, psnr, to_uint8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def task() -> ImageDenoising:
    return ImageDenoising(test_size=64, val_size=32)


def test_psnr_matches_hand_computed_values() -> None:
    target = torch.tensor([0.0, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    y = torch.tensor([0.1, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    # MSE on 0-255: (25.5^2) / 4 = 162.5625; PSNR = 10 log10(255^2 / 162.5625) = 26.0206 dB
    assert float(psnr(y, target)[0]) == pytest.approx(10 * math.log10(255**2 / 162.5625), abs=1e-4)
    assert float(psnr(y, target)[0]) == pytest.approx(26.0206, abs=1e-4)
    # a flat error of 0.1 everywhere is 20 dB; values past the pixel range are clipped first
    flat = torch.zeros(2, 3, 4, 4)
    torch.testing.assert_close(psnr(flat + 0.1, flat), torch.full((2,), 20.0))
    ones = torch.ones(1, 1, 2, 2)
    assert float(psnr(ones * 1.7, ones)[0]) == pytest.approx(100.0)  # capped for a perfect answer


def test_metrics_report_mse_and_psnr(task: ImageDenoising) -> None:
    p = task.split("test")
    m = task.metrics(p, p.x)
    assert set(m) == {"mse", "psnr"}
    # the noisy observation at sigma 0.1 scores about 20 dB (a little more: clipping removes some noise)
    assert 19.5 < float(m["psnr"].mean()) < 21.5
    torch.testing.assert_close(m["mse"], ((p.x - p.target) ** 2).flatten(1).mean(1))


def test_whole_images_are_held_out(task: ImageDenoising) -> None:
    assert {"camera", "chelsea"} <= set(task.test_images)
    assert not set(task.test_images) & set(task.train_images)
    assert set(task.train_images) | set(task.test_images) | set(task.val_images) == set(SKIMAGE_PHOTOS)

    def rows(pool: torch.Tensor) -> set[bytes]:
        return {r.numpy().tobytes() for r in pool.flatten(1)}

    train = rows(task.pools["train"])
    assert not train & rows(task.pools["test"])
    assert not train & rows(task.pools["val"])
    assert task.pools["train"].shape[1:] == (3, 32, 32) and task.pools["train"].shape[0] > 5000


def test_noise_level_is_the_difficulty(task: ImageDenoising) -> None:
    levels = task.split_levels()
    assert levels == {"train": 0.1, "val": 0.1, "test": 0.1, "harder": 0.2, "harder_0.3": 0.3}
    test = task.split("test")
    for name, sigma in levels.items():
        p = task.split(name)
        assert torch.equal(p.difficulty, torch.full((p.num_instances,), sigma))
        assert float((p.x - p.target).std()) == pytest.approx(sigma, rel=0.03)
        if name.startswith(("test", "harder")):  # out of distribution: the same clean patches, more noise
            assert torch.equal(p.target, test.target)
    batch = task.sample(32, gen(0))
    assert float((batch.x - batch.target).std()) == pytest.approx(0.1, rel=0.05)


def test_training_patches_are_flipped_copies_of_the_pool(task: ImageDenoising) -> None:
    """Every training target is one of the eight flips / transpositions of a pool patch."""
    pool = {r.numpy().tobytes() for r in task.pools["train"].flatten(1)}
    clean = to_uint8(task.sample(16, gen(5)).target)
    for patch in clean:
        variants = [patch, patch.flip(-1), patch.flip(-2), patch.flip(-1).flip(-2)]
        variants += [v.transpose(-1, -2) for v in variants]
        assert any(v.contiguous().numpy().tobytes() in pool for v in variants)


@pytest.mark.parametrize("start", ["noisy", "uniform", "grey"])
def test_descent_starts(task: ImageDenoising, start: str) -> None:
    other = ImageDenoising(start=start, test_size=64, val_size=32)
    p = other.split("harder_0.3")
    y0 = other.init_answer(p, gen(0))
    assert y0.shape == p.target.shape and float(y0.min()) >= 0 and float(y0.max()) <= 1
    if start == "noisy":
        torch.testing.assert_close(y0, p.x.clamp(0, 1))
    elif start == "grey":
        assert torch.equal(y0, torch.full_like(y0, 0.5))
    else:
        assert float(y0.std()) == pytest.approx(1 / math.sqrt(12), rel=0.05)


def test_check_is_noise_consistency(task: ImageDenoising) -> None:
    p = task.split("harder")
    assert task.check(p, p.target).all()
    assert not task.check(p, p.x).any()  # keeping the observation leaves no noise out
    assert not task.check(p, (p.target + 0.05).clamp(0, 1)).any()
    # another patch of the test set: rejected unless the two are near-copies (flat sky, faces' backgrounds)
    assert float(task.check(p, p.target.roll(1, 0)).float().mean()) < 0.1


def test_grey_task_and_a_folder_of_images(tmp_path) -> None:
    from skimage.io import imsave

    rng = np.random.default_rng(0)
    for i in range(7):
        imsave(tmp_path / f"img{i}.png", (rng.random((80, 96, 3)) * 255).astype(np.uint8), check_contrast=False)
    task = ImageDenoising(path=str(tmp_path), channels=1, faces=False, test_size=4, val_size=4)
    assert task.test_images == ["img6"] and task.val_images == ["img5"]
    assert task.dims() == {"x_dim": 1024, "y_dim": 1024, "channels": 1, "image_size": 32}
    assert task.pools["test"].shape == (6, 1, 32, 32)  # an 80x96 image holds 2 x 3 patches
    p = task.split("test")
    assert p.x.shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match="Valid names: img0"):
        ImageDenoising(path=str(tmp_path), test_images=["nope"], faces=False, test_size=4, val_size=4)
    with pytest.raises(ValueError, match="fewer than test_size=50"):
        ImageDenoising(path=str(tmp_path), faces=False, test_size=50, val_size=4)
    with pytest.raises(FileNotFoundError, match="no folder"):
        ImageDenoising(path=str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "zeros"}, "Valid choices: noisy, uniform, grey"),
        ({"channels": 2}, "channels must be 1"),
        ({"harder_levels": []}, "harder_levels"),
        ({"test_images": ["camera"], "val_images": ["camera"]}, "both"),
        ({"size": 33, "max_side": 20}, "max_side"),
    ],
)
def test_bad_arguments_say_what_is_valid(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageDenoising(test_size=8, val_size=8, **kwargs)


def test_task_builds_a_problem_energies_can_read(task: ImageDenoising) -> None:
    p = task.generate(3, torch.tensor([0.1, 0.2, 0.3]), gen(1))
    assert isinstance(p, Problem) and p.x.shape == (3, 3, 32, 32)
    noise = (p.x - p.target).flatten(1).std(1)
    assert noise[0] < noise[1] < noise[2]
