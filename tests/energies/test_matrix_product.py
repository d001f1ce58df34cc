"""MatrixProductEnergy: its features are the products of the candidate with the input matrices.

The shared energy tests (tests/energies/test_energies.py) cover it through its config; these check
what is particular to it.
"""

from __future__ import annotations

import pytest
import torch

from irem.energies.matrix_product import MatrixProductEnergy


def test_features_are_y_and_both_products_per_input_matrix() -> None:
    g = torch.Generator().manual_seed(0)
    energy = MatrixProductEnergy(x_dim=2 * 9, y_dim=9, width=8, depth=1)
    x, y = torch.randn(4, 18, generator=g), torch.randn(4, 9, generator=g)
    a, b, ym = x.reshape(4, 2, 3, 3)[:, 0], x.reshape(4, 2, 3, 3)[:, 1], y.reshape(4, 3, 3)
    want = torch.cat([y] + [m.reshape(4, 9) for m in (a @ ym, b @ ym, ym @ a, ym @ b)], dim=1)
    torch.testing.assert_close(energy.features(x, y), want)
    # the MLP reads [features, x], with its x half prepared once per descent
    direct = energy.mlp.net(torch.cat([want, x], 1)).squeeze(-1)
    torch.testing.assert_close(energy(x, y), direct)
    torch.testing.assert_close(energy.energy(energy.prepare(x), y), direct)


def test_gradient_in_y_sees_the_input_matrix() -> None:
    """A bare MLP's gradient in y cannot depend on x through a product; this one's does."""
    torch.manual_seed(0)
    energy = MatrixProductEnergy(x_dim=4, y_dim=4, width=16, depth=1)
    y = torch.randn(1, 4, requires_grad=True)
    eye, scaled = torch.eye(2).reshape(1, 4), 3 * torch.eye(2).reshape(1, 4)
    (g1,) = torch.autograd.grad(energy(eye, y).sum(), y)
    (g3,) = torch.autograd.grad(energy(scaled, y).sum(), y)
    assert not torch.allclose(g1, g3)


@pytest.mark.parametrize(("x_dim", "y_dim"), [(10, 5), (12, 8), (0, 4)])
def test_non_square_shapes_are_refused_with_the_alternative(x_dim: int, y_dim: int) -> None:
    with pytest.raises(ValueError, match=r"square-matrix answer.*energy=mlp") as err:
        MatrixProductEnergy(x_dim=x_dim, y_dim=y_dim)
    assert f"x_dim={x_dim}, y_dim={y_dim}" in str(err.value)


def test_mismatched_inputs_name_the_energy_and_shapes() -> None:
    energy = MatrixProductEnergy(x_dim=4, y_dim=4, width=8, depth=1)
    with pytest.raises(ValueError) as err:
        energy(torch.zeros(3, 4), torch.zeros(3, 9))
    msg = str(err.value)
    assert "MatrixProductEnergy(x_dim=4, y_dim=4)" in msg and "(3, 9)" in msg
