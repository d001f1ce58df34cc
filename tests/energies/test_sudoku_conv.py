"""The conv Sudoku energy read through a softmax: bounded in the logits, so descent cannot run away."""

from __future__ import annotations

import pytest
import torch

from irem.energies.sudoku_conv import SudokuConvEnergy


def boards(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 81, 9)
    x[:, :10, 0] = 1.0
    return x, torch.randn(n, 81, 9, generator=g)


def test_softmax_reading_ignores_a_shift_of_each_cells_logits() -> None:
    torch.manual_seed(0)
    x, y = boards()
    shift = torch.randn(3, 81, 1)
    read = SudokuConvEnergy(width=8, depth=1, softmax=True)
    assert torch.allclose(read.energy(x, y), read.energy(x, y + shift), atol=1e-5)
    torch.manual_seed(0)
    raw = SudokuConvEnergy(width=8, depth=1)
    assert not torch.allclose(raw.energy(x, y), raw.energy(x, y + shift), atol=1e-3)


def test_softmax_reading_bounds_the_energy_as_logits_grow_where_raw_logits_grow_it_quadratically() -> None:
    x, y = boards()
    scales = (1.0, 1e2, 1e4)
    torch.manual_seed(1)
    read = SudokuConvEnergy(width=16, depth=2, softmax=True)
    torch.manual_seed(1)
    raw = SudokuConvEnergy(width=16, depth=2)
    with torch.no_grad():
        read_e = [read.energy(x, s * y) for s in scales]
        raw_e = [raw.energy(x, s * y) for s in scales]
    assert all(torch.isfinite(e).all() and e.max() < 10 * read_e[0].max() + 1 for e in read_e)
    assert (raw_e[2] > 1e5 * raw_e[0]).all()


def test_softmax_flag_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="softmax must be true or false"):
        SudokuConvEnergy(softmax="yes")
