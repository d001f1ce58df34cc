"""energies/gnn.py: IREM's GraphEBM size, its configurable parts, and the prepared fast path.

The shared energy tests (test_energies.py) already run the GNN config on a graph task: one energy
per graph, differentiable in y, instances independent. Bad inputs are tested with the graph tasks
(tests/tasks/test_graph.py).
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from irem.energies.gnn import GNNEnergy
from irem.tasks.graph import ShortestPath


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_irem(compose_config) -> None:
    energy = instantiate(compose_config("train", ("energy=gnn",)).energy, edge_dim=1, y_dim=1)
    # two 1->64 embeddings; GINE layers 1->128 and 128->128 with 128-wide edge projections; MLP 128->128->1
    expected = 2 * 128 + (128 + 128 + 128 + 1) + 2 * (2 * (128 * 128 + 128)) + (128 * 128 + 128) + 129
    assert n_params(energy) == expected == 83_330


@pytest.mark.parametrize(("key", "value"), [("width", 8), ("depth", 1), ("pool", "mean"), ("aggr", "max")])
def test_configurable(key: str, value) -> None:
    task = ShortestPath(test_size=4)
    p = task.generate(3, torch.tensor([3.0, 5.0, 2.0]), gen(0))
    torch.manual_seed(0)
    energy = GNNEnergy(**task.dims(), **{key: value})
    e = energy(p.x, task.init_answer(p, gen(1)))
    assert e.shape == (3,) and torch.isfinite(e).all()
    if key == "depth":
        assert len(energy.convs) == 1


def test_prepared_input_gives_the_same_energy() -> None:
    task = ShortestPath(family="knn", test_size=4)
    p = task.generate(4, 6.0, gen(0))
    torch.manual_seed(0)
    energy = GNNEnergy(**task.dims(), width=16)
    y = task.init_answer(p, gen(1))
    assert torch.equal(energy(energy.prepare(p.x), y), energy(p.x, y))
    other = GNNEnergy(**task.dims(), width=16)  # a result prepared by another energy is not reused
    torch.testing.assert_close(other(energy.prepare(p.x), y), other(p.x, y))


def test_flat_candidate_is_one_value_per_edge() -> None:
    task = ShortestPath(test_size=4)
    p = task.generate(2, 4.0, gen(0))
    energy = GNNEnergy(**task.dims(), width=8)
    y = task.init_answer(p, gen(1))
    assert torch.equal(energy(p.x, y.flatten()), energy(p.x, y))


@pytest.mark.parametrize(("key", "value"), [("pool", "median"), ("aggr", "avg"), ("width", 0), ("edge_dim", 0)])
def test_bad_arguments_name_the_choices(key: str, value) -> None:
    with pytest.raises(ValueError, match=key):
        GNNEnergy(**{key: value})


def test_landscapes_condition_each_graph_and_the_annealed_descent_runs_on_edge_rows() -> None:
    """A landscape per graph gives each graph the energy it has on that landscape alone, and the
    annealed descent steps the answers of a mixed-size batch (rows mapped to graphs by segment)."""
    from irem.ired.annealed import AnnealedDescent

    torch.manual_seed(0)
    task = ShortestPath(test_size=4, val_size=4)
    problem = task.sample(3, torch.Generator().manual_seed(0))
    energy = GNNEnergy(width=8, depth=2, landscapes=10)
    for film in energy.landscape.films:
        torch.nn.init.normal_(film.weight, std=0.5)
    y = task.init_answer(problem, torch.Generator().manual_seed(1))
    mixed = energy.energy(problem.x, y, torch.tensor([0, 4, 9]))
    for g, k in enumerate((0, 4, 9)):
        assert torch.allclose(mixed[g], energy.energy(problem.x, y, k)[g], atol=1e-5)
    assert not torch.allclose(energy.energy(problem.x, y, 0), energy.energy(problem.x, y, 9))
    result = AnnealedDescent(steps_per_landscape=2).solve(energy, problem.x, y, segment=problem.segment)
    assert result.y.shape == y.shape and result.steps.shape == (3,) and bool(torch.isfinite(result.y).all())
