"""Divergence is visible: accept-if-lower marks an instance whose energy went NaN as diverged (at the
shared step, so every loop built on it does), and evaluation rows count diverged and max-steps
instances per split and budget, in eval.json as in the printed table."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from irem.build import build_solver
from irem.energies.mlp import MLPEnergy
from irem.energy import EnergyFunction
from irem.energy_model import EnergyModel
from irem.evaluation import evaluate
from irem.objectives.irem import IREMObjective
from irem.problem import Status
from irem.records import write_results
from irem.solver import Solver
from irem.solvers.adaptive import AdaptiveDescent
from irem.solvers.gradient_descent import GradientDescent
from irem.solvers.halting import EnergyPlateau
from irem.tables import format_solves
from irem.tasks.matrix import Inverse
from irem.trainer import Trainer

DT = torch.float64
NAN_FROM = 3  # instance 0's energy is NaN everywhere from this step on
WALL = 5.0  # instance 1's energy is infinite beyond |y| > WALL: a too-long step lands there


class Breaking(EnergyFunction):
    """0.5 * |y - b|^2 with b = x[:, :2], but NaN from step NAN_FROM on where x[:, 2] == 1 (as if
    the instance's weights broke) and infinite outside |y| <= WALL where x[:, 2] == 2 (a region a
    long step overshoots into). Read from x, so it follows the instances through compaction."""

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        e = 0.5 * ((y - x[:, :2]) ** 2).sum(1)
        e = torch.where((x[:, 2] == 1) & (step >= NAN_FROM), torch.full_like(e, math.nan), e)
        outside = (x[:, 2] == 2) & (y.abs().amax(1) > WALL)
        return torch.where(outside, torch.full_like(e, math.inf), e)


def gd_accept(compose_config) -> Solver:
    cfg = compose_config("train", ["solver=gd_accept", "solver.step_size=1.5", "solver.max_steps=6"])
    return build_solver(cfg.solver)


SOLVERS: dict[str, Callable] = {
    "gd_accept": gd_accept,
    "adaptive_gd_accept": lambda compose: AdaptiveDescent(
        gd_accept(compose), rules=[EnergyPlateau(tol=1e-30, patience=50)], max_steps=6
    ),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_accept_if_lower_marks_an_instance_that_turned_nan_diverged(name: str, compose_config) -> None:
    b = torch.tensor([[1.0, -2.0], [4.0, 0.0], [0.5, 0.5], [-3.0, 1.0]], dtype=DT)
    x = torch.cat([b, torch.tensor([[1.0], [2.0], [0.0], [0.0]], dtype=DT)], 1)
    y0 = torch.zeros(4, 2, dtype=DT)
    r = SOLVERS[name](compose_config).solve(Breaking(), x, y0)
    healthy = x.clone()
    healthy[0, 2] = 0.0
    clean = GradientDescent(step_size=1.5, max_steps=6, accept_if_lower=True).solve(
        Breaking(), healthy, y0, record_trajectory=True
    )
    # instance 0: diverged at the step its energy went NaN, kept at its last finite iterate
    assert int(r.status[0]) == int(Status.DIVERGED), r.status
    assert int(r.steps[0]) == NAN_FROM and math.isnan(float(r.energy[0]))
    assert torch.equal(r.y[0], clean.trajectory[NAN_FROM - 1][0])
    # instance 1: its first proposal overshoots into the infinite region; that is only a rejected
    # step (the shrunk one is finite and lower), not a divergence
    assert int(r.status[1]) == int(Status.MAX_STEPS) and math.isfinite(float(r.energy[1]))
    assert float(r.energy[1]) < float(Breaking().energy(x, y0)[1])
    # the rest of the batch is what it is without instances 0 and 1
    rest = GradientDescent(step_size=1.5, max_steps=6, accept_if_lower=True).solve(Breaking(), x[2:], y0[2:])
    assert torch.equal(r.y[2:], rest.y) and torch.equal(r.status[2:], rest.status)


class NaNFrom(EnergyFunction):
    """A trained energy whose instance 0 turns NaN from step `bad_from` of every solve."""

    def __init__(self, inner: EnergyFunction, bad_from: int) -> None:
        super().__init__()
        self.inner, self.bad_from = inner, bad_from

    def energy(self, x: Tensor, y: Tensor, step: int = 0) -> Tensor:
        e = self.inner.energy(x, y, step)
        if step < self.bad_from:
            return e
        return torch.where(torch.arange(e.shape[0]) == 0, torch.full_like(e, math.nan), e)


def test_eval_json_of_a_tiny_trained_run_counts_diverged_and_max_steps(tmp_path) -> None:
    task = Inverse(size=3, test_size=8, val_size=8)
    torch.manual_seed(0)
    solver = GradientDescent(step_size=1.0, max_steps=3, accept_if_lower=True)
    model = EnergyModel(MLPEnergy(**task.dims(), width=16), solver, IREMObjective())
    Trainer(task, model, tmp_path / "run", iterations=3, batch_size=16, progress=False, log_every=1).fit()
    model.energy = NaNFrom(model.energy, bad_from=2)  # the first instance of every batch breaks at step 2
    rows = evaluate(task, model, ("test",), (1, 4), seed=0, batch_size=4)  # two batches of 4
    json_path, _ = write_results(rows, tmp_path / "run")
    saved = json.loads(json_path.read_text())
    counts = {r["budget"]: (r["diverged"], r["max_steps"]) for r in saved if r["split"] == "test"}
    # one broken instance per batch: none diverged after 1 step (all 8 still moving); both by step 4
    assert counts == {"1": (0, 8), "4": (2, 6), "best": (2, 6)}
    table = format_solves(rows)
    assert "diverged (instances)" in table and "max_steps (instances)" in table
