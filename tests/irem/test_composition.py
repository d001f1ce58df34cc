"""irem/composition.py: composed energies solved sequentially and jointly.

Known quadratic sub-energies have analytic minimisers, so the two solves are checked against
formulas (they differ when the outer energy pulls on its input); sub-models load from irem-train
checkpoints frozen and refuse a slot of other shapes; joint descent lowers the composed energy;
a mixed-depth batch is solved as its depths one by one; and a seed fixes the answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from irem.build import build_model, build_task
from irem.checkpoint import save_atomic
from irem.composition import (
    ComposedEnergy,
    ComposedInput,
    ComposedPredictor,
    Node,
    Plan,
    load_slot,
    solve_joint,
    solve_sequential,
)
from irem.config import to_container
from irem.energies.gnn import GNNEnergy
from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction
from irem.energy_model import EnergyModel
from irem.objectives.irem import IREMObjective
from irem.solvers.gradient_descent import GradientDescent
from irem.tasks.nested import NestedAddition, NestedShortestPath


class Quadratic(EnergyFunction):
    """E(x, y) = 0.5 ||y - M x||^2 + 0.5 lam ||y||^2: minimised at M x / (1 + lam) for fixed x."""

    def __init__(self, m: Tensor, lam: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("m", m)
        self.lam = lam
        self.y_dim, self.x_dim = m.shape

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        return 0.5 * ((y - x @ self.m.T) ** 2).sum(1) + 0.5 * self.lam * (y**2).sum(1)


def model(energy: EnergyFunction, step_size: float, max_steps: int = 10) -> EnergyModel:
    return EnergyModel(
        energy, GradientDescent(step_size=step_size, max_steps=max_steps), IREMObjective(), replay_capacity=0
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- two known quadratics: z = P p, then y from Q z ----------------------------------------------------

P = torch.tensor([[1.0, 0.5, -0.3], [0.2, -1.0, 0.4]])
Q = torch.tensor([[0.8, -0.6], [0.5, 1.2]])
LAM = 0.5
PLAN = Plan((Node("z", "inner", ("p",)), Node("y", "outer", ("z",))))


def quadratic_models() -> dict[str, EnergyModel]:
    return {"inner": model(Quadratic(P), 0.3), "outer": model(Quadratic(Q, LAM), 0.3)}


def parts() -> dict[str, Tensor]:
    return {"p": torch.randn(5, 3, generator=gen(1))}


def test_sequential_composition_reaches_the_analytic_answer() -> None:
    """Each node minimised in turn: z = P p, then y = Q z / (1 + lam)."""
    out = solve_sequential(PLAN, quadratic_models(), parts(), None, budget=200, generator=gen())
    z = parts()["p"] @ P.T
    torch.testing.assert_close(out["z"], z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["y"], z @ Q.T / (1 + LAM), atol=1e-5, rtol=1e-5)


def test_joint_composition_reaches_the_minimiser_of_the_sum() -> None:
    """min over (z, y) of 0.5|z - Pp|^2 + 0.5|y - Qz|^2 + 0.5 lam |y|^2: y = Qz / (1 + lam) and
    (I + lam / (1 + lam) Q^T Q) z = P p. The outer term pulls z away from the sequential answer."""
    result, energy = solve_joint(PLAN, quadratic_models(), parts(), None, GradientDescent(step_size=0.3), 400, gen())
    got = energy.split(result.y)
    a = torch.eye(2) + LAM / (1 + LAM) * Q.T @ Q
    z = torch.linalg.solve(a, (parts()["p"] @ P.T).T).T
    torch.testing.assert_close(got["z"], z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["y"], z @ Q.T / (1 + LAM), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got["z"], parts()["p"] @ P.T, atol=1e-2)  # the two solves really differ


def test_joint_without_input_gradient_settles_where_the_sequential_solve_does() -> None:
    result, energy = solve_joint(
        PLAN, quadratic_models(), parts(), None, GradientDescent(step_size=0.3), 400, gen(), input_grad=0.0
    )
    sequential = solve_sequential(PLAN, quadratic_models(), parts(), None, budget=200, generator=gen())
    for name, value in energy.split(result.y).items():
        torch.testing.assert_close(value, sequential[name], atol=1e-5, rtol=1e-5)


def test_joint_descent_lowers_the_composed_energy() -> None:
    torch.manual_seed(0)
    models = {"inner": model(MLPEnergy(3, 2, width=16), 0.05), "outer": model(MLPEnergy(2, 2, width=16), 0.05)}
    result, _ = solve_joint(
        PLAN, models, parts(), None, GradientDescent(step_size=0.05), 30, gen(), record_history=True
    )
    history = result.energy_history
    assert (history[-1] < history[0]).all()
    assert (history.mean(1).diff() <= 1e-6).all()


def test_composed_energy_is_the_sum_of_its_nodes() -> None:
    energies = {"inner": Quadratic(P), "outer": Quadratic(Q, LAM)}
    composed = ComposedEnergy(PLAN, energies, {"inner": 2, "outer": 2})
    y = torch.randn(5, 4, generator=gen(2))
    z, out = y[:, :2], y[:, 2:]
    expected = energies["inner"].energy(parts()["p"], z) + energies["outer"].energy(z, out)
    x = ComposedInput(parts())
    torch.testing.assert_close(composed.energy(x, y), expected)
    torch.testing.assert_close(composed.energy(composed.prepare(x), y), expected)
    with pytest.raises(ValueError, match=r"end in 4 values \(2 \+ 2"):
        composed.energy(x, y[:, :3])


# -- plans --------------------------------------------------------------------------------------


def test_plan_names_what_an_input_may_be() -> None:
    plan = Plan((Node("z", "inner", ("p",)), Node("y", "outer", ("w",))))
    with pytest.raises(ValueError, match="reads 'w'.*Valid inputs there: p, z"):
        plan.check(["p"], ["inner", "outer"])
    with pytest.raises(ValueError, match="needs sub-model 'outer'; valid slots: inner"):
        PLAN.check(["p"], ["inner"])
    with pytest.raises(ValueError, match="unique"):
        Plan((Node("z", "a", ("p",)), Node("z", "a", ("z",))))


# -- loading sub-models from runs ------------------------------------------------------------------


def tiny_run(tmp_path: Path, compose_config, size: int) -> Path:
    """A run dir as irem-train leaves it: checkpoints/last.pt with the config and the model state."""
    cfg = compose_config("train", ("task=addition", f"task.size={size}", "energy.width=8"))
    cfg.name = "tiny"
    built = build_model(cfg, build_task(cfg.task))
    save_atomic({"config": to_container(cfg), "model": built.state_dict()}, tmp_path / "checkpoints" / "last.pt")
    return tmp_path


def test_loading_into_a_slot_of_other_shapes_names_both(tmp_path: Path, compose_config) -> None:
    run = tiny_run(tmp_path, compose_config, size=2)
    need = NestedAddition(size=20, test_size=4, val_size=4).slots()["add"]
    with pytest.raises(ValueError) as err:
        load_slot("add", run, need)
    msg = str(err.value)
    assert "MLPEnergy(x_dim=8, y_dim=4)" in msg and "(x_dim=800, y_dim=400)" in msg
    assert "slot 'add'" in msg and str(run) in msg


def test_loaded_sub_model_is_frozen_and_matches_its_checkpoint(tmp_path: Path, compose_config) -> None:
    run = tiny_run(tmp_path, compose_config, size=2)
    loaded = load_slot("add", run, {"x_dim": 8, "y_dim": 4})
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(not p.requires_grad for p in loaded.parameters())
    assert not loaded.training
    weights = {k: v for k, v in loaded.state_dict().items() if isinstance(v, Tensor)}
    assert weights and all(torch.equal(v, saved[k]) for k, v in weights.items())


# -- the composed predictor on nested tasks -----------------------------------------------------


def exact_addition(size: int) -> EnergyModel:
    """0.5 |y - (a + b)|^2: one step of size 1 lands on the sum from anywhere."""
    cells = size * size
    return model(Quadratic(torch.cat([torch.eye(cells), torch.eye(cells)], dim=1)), 1.0, max_steps=1)


def test_composition_of_an_exact_addition_solves_every_depth_of_a_mixed_batch() -> None:
    task = NestedAddition(size=2, max_depth=4, train_depth=1, test_size=4, val_size=4)
    p = task.generate(8, torch.tensor([1.0, 4, 2, 3, 1, 4, 2, 3]), gen(0))
    sequential = ComposedPredictor({"add": exact_addition(2)}).predict(task, p, [1], gen())
    torch.testing.assert_close(sequential.answers["1"], p.target, atol=1e-5, rtol=1e-5)
    assert sequential.info["steps_mean"]["1"] == pytest.approx(2.5)  # one step per node, mean depth 2.5
    joint = ComposedPredictor({"add": exact_addition(2)}, mode="joint", solver=GradientDescent(step_size=0.3))
    answers = joint.predict(task, p, [300], gen()).answers
    torch.testing.assert_close(answers["300"], p.target, atol=1e-4, rtol=1e-4)
    assert set(answers) == {"300", "best"}


def graph_predictor(mode: str) -> ComposedPredictor:
    torch.manual_seed(0)
    return ComposedPredictor({"sp": model(GNNEnergy(edge_dim=1, y_dim=1, width=8, depth=2), 0.5)}, mode=mode)


@pytest.mark.parametrize("mode", ["sequential", "joint"])
def test_a_mixed_graph_batch_is_solved_depth_by_depth(mode: str) -> None:
    task = NestedShortestPath(nodes=3, max_depth=3, test_size=4, val_size=4)
    p = task.generate(5, torch.tensor([2.0, 1, 3, 1, 2]), gen(0))
    whole = graph_predictor(mode).predict(task, p, [2], gen(7)).answers["2"]
    assert whole.shape == p.target.shape and torch.isfinite(whole).all()
    g = gen(7)
    for depth in (1, 2, 3):  # the predictor solves depths in ascending order with one generator
        index = torch.nonzero(task.depth_of(p) == depth).flatten()
        alone = graph_predictor(mode).predict(task, p.select(index), [2], g).answers["2"]
        rows = torch.isin(p.segment, index)
        torch.testing.assert_close(whole[rows], alone)


def test_same_seed_same_answers_and_another_seed_others() -> None:
    task = NestedAddition(size=2, max_depth=3, train_depth=1, test_size=4, val_size=4)
    p = task.generate(4, 3, gen(0))
    torch.manual_seed(0)
    predictor = ComposedPredictor({"add": model(MLPEnergy(8, 4, width=16), 0.5)}, mode="joint")
    first = predictor.predict(task, p, [1, 5], gen(3)).answers
    again = predictor.predict(task, p, [1, 5], gen(3)).answers
    other = predictor.predict(task, p, [1, 5], gen(4)).answers
    for label in first:
        assert torch.equal(first[label], again[label])
    assert not torch.equal(first["5"], other["5"])


def test_composed_predictor_says_what_is_missing_or_wrong() -> None:
    task = NestedAddition(size=2, max_depth=3, train_depth=1, test_size=4, val_size=4)
    p = task.generate(2, 2, gen(0))
    with pytest.raises(ValueError, match=r"needs sub-models for slot\(s\) \['add'\]; given: inv"):
        ComposedPredictor({"inv": exact_addition(2)}).predict(task, p, [1], gen())
    with pytest.raises(ValueError, match=r"does not fit slot 'add', which needs \(x_dim=8, y_dim=4\)"):
        ComposedPredictor({"add": exact_addition(3)}).predict(task, p, [1], gen())
    with pytest.raises(ValueError, match="Valid modes: sequential, joint"):
        ComposedPredictor({"add": exact_addition(2)}, mode="both")
    direct = torch.nn.Linear(8, 4)
    direct.x_dim, direct.y_dim = 8, 4
    with pytest.raises(ValueError, match="predict directly"):
        ComposedPredictor({"add": direct}, mode="joint").predict(task, p, [1], gen())
    with pytest.raises(NotImplementedError, match="never trained"):
        ComposedPredictor({"add": exact_addition(2)}).training_loss(task, p, gen())


def test_direct_sub_models_compose_sequentially() -> None:
    """The composed feed-forward baseline: a direct predictor per node, answered in one pass."""
    task = NestedAddition(size=2, max_depth=3, train_depth=1, test_size=4, val_size=4)
    p = task.generate(3, 3, gen(0))
    exact = torch.nn.Linear(8, 4, bias=False)
    exact.weight.data = torch.cat([torch.eye(4), torch.eye(4)], dim=1)
    exact.x_dim, exact.y_dim = 8, 4
    answers = ComposedPredictor({"add": exact}).predict(task, p, [1], gen()).answers
    torch.testing.assert_close(answers["1"], p.target, atol=1e-6, rtol=1e-6)
