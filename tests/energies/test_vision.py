"""energies/vision.py: one energy per image, blind to batch order, adaLN-Zero's start, how the
observation enters, second-order gradients for descent training, and a tiny training that learns."""

from __future__ import annotations

import pytest
import torch

from irem.energies.vision import VisionEnergy
from irem.energy_model import EnergyModel
from irem.networks.vision import Backbone, sincos_2d
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.images import ImageDenoising

SMALL = {"channels": 3, "image_size": 16, "patch": 4, "width": 32, "depth": 2, "heads": 2}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def woken(energy: VisionEnergy, seed: int = 0) -> VisionEnergy:
    """The zero-initialised layers given small random values, as training would, so E depends on y."""
    g = gen(seed)
    with torch.no_grad():
        for p in energy.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return energy


def images(n: int, seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=gen(seed))


def test_energy_is_a_scalar_per_image_and_blind_to_batch_order() -> None:
    torch.manual_seed(0)
    energy = woken(VisionEnergy(**SMALL))
    x, y = images(6, 1), images(6, 2)
    e = energy(x, y)
    assert e.shape == (6,) and torch.isfinite(e).all()
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(energy(x[order], y[order]), e[order], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(energy(x[:1], y[:1]), e[:1], rtol=1e-5, atol=1e-6)
    # the mean of the patch energies: 16 patches of 4x4 on a 16x16 image
    patches = energy.patch_energies(x, y)
    assert patches.shape == (6, 16)
    torch.testing.assert_close(patches.mean(1), e)


def test_adaln_zero_starts_constant() -> None:
    """Zero-initialised gates and head: an untrained energy is flat in y (and the backbone the identity
    on its tokens), which is why descent training's first updates reach only the head."""
    energy = VisionEnergy(**SMALL)
    y = images(3, 2).requires_grad_(True)
    e = energy(images(3, 1), y)
    (grad,) = torch.autograd.grad(e.sum(), y)
    assert torch.equal(e, torch.zeros(3)) and torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("condition", [True, False])
def test_how_the_observation_enters(condition: bool) -> None:
    torch.manual_seed(0)
    energy = woken(VisionEnergy(**SMALL, condition=condition))
    x, y = images(4, 1), images(4, 2)
    moved = energy(x + 0.3, y)
    if condition:
        assert not torch.allclose(moved, energy(x, y))
        assert energy.backbone.embed.in_channels == 6
    else:
        torch.testing.assert_close(moved, energy(x, y))
        assert energy(None, y).shape == (4,)  # E(y) alone: x is never read


def test_second_order_gradient_reaches_the_energy() -> None:
    """Descent training backpropagates through dE/dy; every weight the energy uses must get a gradient."""
    torch.manual_seed(0)
    energy = woken(VisionEnergy(**SMALL))
    x, target = images(2, 1), images(2, 3)
    y = images(2, 2).requires_grad_(True)
    (g,) = torch.autograd.grad(energy(x, y).sum(), y, create_graph=True)
    loss = ((y - 0.5 * g - target) ** 2).mean()
    loss.backward()
    for name, p in energy.named_parameters():
        if name == "backbone.head.bias":  # a constant shift of E: no part of dE/dy, so no gradient
            assert p.grad is None
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert energy.backbone.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [((2, 3, 16, 16), (2, 1, 16, 16)), ((2, 3, 16, 16), (2, 768)), ((2, 3, 8, 8), (2, 3, 16, 16))],
    ids=["wrong-channels", "flat", "wrong-x"],
)
def test_wrong_shapes_name_the_expected_one(x_shape, y_shape) -> None:
    energy = VisionEnergy(**SMALL)
    with pytest.raises(ValueError, match=r"VisionEnergy\(channels=3, image_size=16\) expects .* \[N, 3, 16, 16\]"):
        energy(torch.zeros(x_shape), torch.zeros(y_shape))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"patch": 5}, "patch"), ({"heads": 3}, "heads"), ({"depth": 0}, "depth")]
)
def test_bad_sizes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisionEnergy(**{**SMALL, **kwargs})


def test_sincos_positions_are_distinct_and_fixed() -> None:
    table = sincos_2d(32, 4)
    assert table.shape == (16, 32)
    assert torch.cdist(table, table).add(torch.eye(16)).min() > 0.1  # no two patches share a code
    backbone = Backbone(3, 1, 16, 4, 32, 1, 2)
    assert "positions" not in dict(backbone.named_parameters())
    torch.testing.assert_close(backbone.positions, table)


def test_tiny_descent_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    task = ImageDenoising(size=16, stride=16, test_size=16, val_size=16)
    energy = VisionEnergy(**SMALL)
    model = EnergyModel(
        energy,
        GradientDescent(step_size=1.0, max_steps=2, learnable_step=True, truncate=0),
        IREMObjective(),
        replay_capacity=0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    val, g = task.split("val"), gen(0)

    def val_mse() -> float:
        return float(task.loss(val, model.predict(task, val, [2], g).answers["2"]).mean())

    before = val_mse()
    for _ in range(40):
        loss, _ = model.training_loss(task, task.sample(32, g), g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert val_mse() < 0.8 * before
