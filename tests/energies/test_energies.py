"""Energies: shared tests over configs/energy/*.yaml, then the MLP energy's specifics.

A shared test builds each energy with the dims of the first task config it fits (so a GNN energy
will be paired with a graph task) and checks one energy per instance, differentiability in y,
determinism and independence of the instances in a batch.
"""

from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from irem.config import valid_keys
from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction, check_energy_fits, describe
from irem.networks.mlp import make_activation, mlp
from irem.problem import Problem
from irem.task import Task
from irem.tasks.matrix import Inverse


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def wake_zero_layers(energy: EnergyFunction) -> None:
    """Give all-zero parameter tensors small random values.

    An energy with zero-initialised output layers (adaLN-Zero and a zero head, energies/vision.py)
    is constant in y until trained, so the checks below would test its initialisation instead of
    its function. Energies without such layers are left as built.
    """
    g = gen(3)
    with torch.no_grad():
        for p in energy.parameters():
            if not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


@pytest.fixture
def fitted(energy_name: str, compose_config, config_names) -> tuple[EnergyFunction, Task, Problem, torch.Tensor]:
    """The energy, built with the dims of the first task config it fits, and a small batch."""
    tried = []
    for task_name in config_names("task"):
        cfg = compose_config("train", (f"task={task_name}", f"energy={energy_name}"))
        task = instantiate(cfg.task, test_size=8, val_size=8)
        keys = valid_keys(cfg.energy)
        dims = {k: v for k, v in task.dims().items() if keys is None or k in keys}
        torch.manual_seed(0)
        try:
            energy = instantiate(cfg.energy, **dims)
            check_energy_fits(energy, task)
        except (ValueError, InstantiationException) as err:
            tried.append(f"{task_name}: {err}")
            continue
        problem = task.generate(5, task.difficulty, gen(1))
        wake_zero_layers(energy)
        return energy, task, problem, task.init_answer(problem, gen(2))
    pytest.fail(f"energy {energy_name} fits no task config: {tried}")


def test_energy_is_an_energy_function(fitted) -> None:
    energy, *_ = fitted
    assert isinstance(energy, EnergyFunction)
    assert sum(p.numel() for p in energy.parameters()) > 0


def test_one_energy_per_instance(fitted) -> None:
    energy, _, problem, y = fitted
    e = energy.energy(problem.x, y)
    assert e.shape == (problem.num_instances,)
    assert torch.isfinite(e).all()
    assert torch.equal(energy(problem.x, y), e)  # forward is energy


def test_differentiable_in_y(fitted) -> None:
    energy, _, problem, y = fitted
    y = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(problem.x, y).sum(), y)
    assert grad.shape == y.shape
    assert torch.isfinite(grad).all()
    assert (grad.reshape(grad.shape[0], -1).abs().sum(1) > 0).all()


def test_gradient_reaches_parameters(fitted) -> None:
    energy, _, problem, y = fitted
    energy.zero_grad()
    energy.energy(problem.x, y).sum().backward()
    grads = [p.grad for p in energy.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_deterministic_and_batch_independent(fitted) -> None:
    energy, _, problem, y = fitted
    e = energy.energy(problem.x, y)
    assert torch.equal(e, energy.energy(problem.x, y.clone()))
    if problem.segment is None and isinstance(problem.x, torch.Tensor):
        part = energy.energy(problem.x[:2], y[:2])
        torch.testing.assert_close(part, e[:2], rtol=1e-5, atol=1e-6)
        # changing instance 4's answer changes only instance 4's energy (a non-constant change: an
        # energy that reads a softmax of the answer ignores adding the same value everywhere)
        y2 = y.clone()
        y2[4] += torch.linspace(0.0, 1.0, y2[4].numel()).reshape(y2[4].shape)
        e2 = energy.energy(problem.x, y2)
        torch.testing.assert_close(e2[:4], e[:4], rtol=1e-5, atol=1e-6)
        assert e2[4] != e[4]
    elif problem.segment is None:  # x not indexed by instance (text windows: one instance per position)
        # a non-constant change: a softmax over logits ignores adding the same value everywhere
        y2 = y.clone()
        y2[4] += torch.linspace(0.0, 1.0, y2[4].numel()).reshape(y2[4].shape)
        e2 = energy.energy(problem.x, y2)
        torch.testing.assert_close(e2[:4], e[:4], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(e2[5:], e[5:], rtol=1e-5, atol=1e-6)
        assert e2[4] != e[4]
    else:  # answers per row with a segment (graphs): the same, instance by instance
        first = torch.arange(2)
        part = energy.energy(problem.select(first).x, y[problem.segment < 2])
        torch.testing.assert_close(part, e[:2], rtol=1e-5, atol=1e-5)
        y2 = y.clone()
        y2[problem.segment == 4] += 1.0
        e2 = energy.energy(problem.x, y2)
        torch.testing.assert_close(e2[:4], e[:4], rtol=1e-5, atol=1e-6)
        assert e2[4] != e[4]


# -- MLPEnergy --------------------------------------------------------------------------------------


def test_mlp_parameter_count_matches_paper(compose_config) -> None:
    cfg = compose_config("train", ("energy=mlp",)).energy
    energy = instantiate(cfg, x_dim=400, y_dim=400)
    n = sum(p.numel() for p in energy.parameters())
    assert 930_000 <= n <= 950_000, n
    assert n == (800 * 512 + 512) + 2 * (512 * 512 + 512) + (512 + 1)
    assert isinstance(energy.net[1], torch.nn.SiLU)


def test_mlp_returns_one_value_per_instance() -> None:
    energy = MLPEnergy(x_dim=6, y_dim=4, width=16, depth=2)
    x, y = torch.randn(7, 6, generator=gen()), torch.randn(7, 4, generator=gen(1))
    assert energy(x, y).shape == (7,)
    # inputs flattened: [N, 2, 3] and [N, 2, 2] are read as [N, 6] and [N, 4]
    torch.testing.assert_close(energy(x.reshape(7, 2, 3), y.reshape(7, 2, 2)), energy(x, y))


def test_mlp_reads_concat_y_x() -> None:
    torch.manual_seed(0)
    energy = MLPEnergy(x_dim=3, y_dim=2, width=8, depth=1)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    torch.testing.assert_close(energy(x, y), energy.net(torch.cat([y, x], 1)).squeeze(-1))


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [((3, 6), (3, 5)), ((3, 7), (3, 4)), ((2, 6), (3, 4))],
    ids=["wrong-y", "wrong-x", "wrong-batch"],
)
def test_mlp_mismatched_dims_raise(x_shape, y_shape) -> None:
    energy = MLPEnergy(x_dim=6, y_dim=4, width=8, depth=1)
    with pytest.raises(ValueError) as err:
        energy(torch.zeros(x_shape), torch.zeros(y_shape))
    msg = str(err.value)
    assert "MLPEnergy" in msg and "x_dim=6" in msg and "y_dim=4" in msg
    assert str(tuple(x_shape)) in msg and str(tuple(y_shape)) in msg


def test_mlp_bad_activation_and_sizes() -> None:
    with pytest.raises(ValueError, match="swish"):
        make_activation("swishh")
    with pytest.raises(ValueError, match="depth"):
        mlp(4, 8, 0, 1, "relu")
    with pytest.raises(ValueError, match="width"):
        MLPEnergy(2, 2, width=0)


def test_check_energy_fits_accepts_matching_energy() -> None:
    task = Inverse(size=4, test_size=8)
    check_energy_fits(MLPEnergy(**task.dims(), width=8), task)  # no error


def test_check_energy_fits_reports_mismatch() -> None:
    big = Inverse(size=20, test_size=8)
    small = Inverse(size=4, test_size=8)
    energy = MLPEnergy(**big.dims(), width=8)
    with pytest.raises(ValueError) as err:
        check_energy_fits(energy, small)
    msg = str(err.value)
    assert "MLPEnergy(x_dim=400, y_dim=400)" in msg
    assert "inverse" in msg
    assert "'x_dim': 16" in msg and "'y_dim': 16" in msg  # the task's dims, so the fix is visible
    assert describe(energy) == "MLPEnergy(x_dim=400, y_dim=400)"


def test_check_energy_fits_wrong_output_shape() -> None:
    class PerEntry(EnergyFunction):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def energy(self, x, y, step=0):
            return self.w * y**2  # forgot to reduce per instance

    with pytest.raises(ValueError, match=r"one value per instance, shape \(2,\)"):
        check_energy_fits(PerEntry(), Inverse(size=3, test_size=8))
