"""The maze energies (energies/maze_conv.py, energies/maze_graph.py): one set of weights scores mazes
of two sizes, walls play no part in the candidate, and a wrong input is named."""

from __future__ import annotations

import math

import pytest
import torch

from irem.energies.maze_conv import MazeConvEnergy
from irem.energies.maze_graph import MazeGraphEnergy, neighbour_sum
from irem.tasks.maze import Maze

ENERGIES = {"conv": lambda: MazeConvEnergy(width=8, depth=2), "graph": lambda: MazeGraphEnergy(width=8)}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ENERGIES)
@pytest.mark.parametrize("layout", ["grid", "image"])
def test_same_weights_read_two_sizes(name: str, layout: str) -> None:
    torch.manual_seed(0)
    energy = ENERGIES[name]()
    task = Maze(layout=layout, test_size=4, val_size=4)
    for size in (9, 29):
        p = task.generate(3, size, gen(size))
        y = task.init_answer(p, gen(1)).requires_grad_(True)
        e = energy.energy(p.x, y)
        assert e.shape == (3,) and torch.isfinite(e).all()
        (grad,) = torch.autograd.grad(e.sum(), y)
        assert grad.shape == y.shape and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ENERGIES)
def test_walls_play_no_part(name: str) -> None:
    torch.manual_seed(0)
    energy = ENERGIES[name]()
    task = Maze(test_size=4, val_size=4)
    p = task.generate(2, 11, gen(0))
    y = task.init_answer(p, gen(1))
    wall = ~(p.x.amax(1) > 0.5)
    moved = y.clone()
    moved[wall] = torch.randn(int(wall.sum()), 2, generator=gen(2))
    torch.testing.assert_close(energy.energy(p.x, moved), energy.energy(p.x, y))


def test_conv_energy_is_a_sum_over_pixels() -> None:
    """A sum, not a mean: a maze tiled with wall around it keeps each pixel's gradient scale."""
    torch.manual_seed(0)
    energy = MazeConvEnergy(width=4, depth=1, heads=1)
    x, y = torch.zeros(1, 3, 5, 5), torch.zeros(1, 5, 5, 2)  # all wall: the candidate reads as zero
    h = energy.stem(torch.zeros(1, 5, 5, 5))
    for block in energy.blocks:
        h = block(h)
    torch.testing.assert_close(energy.energy(x, y), (energy.head(h) ** 2).sum().reshape(1))


def test_neighbour_sum_counts_the_four_neighbours() -> None:
    t = torch.zeros(1, 1, 5, 5)
    t[0, 0, 2, 2] = 1.0
    near = neighbour_sum(t, 1)[0, 0]
    assert near.sum() == 4 and near[1, 2] == near[3, 2] == near[2, 1] == near[2, 3] == 1
    assert neighbour_sum(t, 2)[0, 0, 0, 2] == 1 and neighbour_sum(t, 2)[0, 0, 1, 2] == 0


@pytest.mark.parametrize("name", ENERGIES)
def test_wrong_input_names_the_task(name: str) -> None:
    energy = ENERGIES[name]()
    with pytest.raises(ValueError, match=r"task=maze"):
        energy.energy(torch.zeros(2, 81, 9), torch.zeros(2, 81, 9))
    with pytest.raises(ValueError, match=r"\(2, 5, 5, 2\)"):
        energy.energy(torch.zeros(2, 3, 5, 5), torch.zeros(2, 5, 5, 3))


def test_conv_energy_rejects_bad_sizes() -> None:
    for key in ("width", "depth", "heads"):
        with pytest.raises(ValueError, match=key):
            MazeConvEnergy(**{key: 0})
    assert math.isfinite(
        float(MazeConvEnergy(landscapes=3).energy(torch.ones(1, 3, 5, 5), torch.zeros(1, 5, 5, 2), 2).detach())
    )
