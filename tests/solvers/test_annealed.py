"""solver=annealed: IRED's descent from the smoothest landscape to the sharpest, on an oracle family
whose landscapes are exact denoisers of y* = x (tests/irem/test_ired.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from irem.energies.mlp import MLPEnergy
from irem.energy_model import EnergyModel
from irem.ired.annealed import AnnealedDescent
from irem.ired.objective import IREDObjective
from irem.problem import AnswerConstraint, Status
from irem.solvers.best_of_n import BestOfN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "irem"))
from test_ired import Identity, Oracle  # noqa: E402


def problem_of(n: int = 32, seed: int = 0):
    task = Identity(dim=6)
    problem = task.generate(n, 1.0, torch.Generator().manual_seed(seed))
    return task, problem, task.init_answer(problem, torch.Generator().manual_seed(seed + 1))


@pytest.mark.parametrize("budget", [1, 10, 13, 60])
def test_an_exact_denoiser_is_solved_at_every_budget(budget: int) -> None:
    """The denoising jump of an exact denoiser lands on the truth; the accept-if-lower steps after it
    cannot leave it (nothing is lower)."""
    _, problem, y0 = problem_of()
    result = AnnealedDescent().solve(Oracle(), problem.x, y0, budget=budget, snapshots=[budget])
    assert float(((result.y - problem.target) ** 2).mean()) < 1e-10
    assert torch.equal(result.snapshots[budget], result.y)
    assert int(result.steps.max()) == budget and bool((result.landscape == 0).all())
    assert bool((result.evaluations > result.steps).all())  # each landscape's start is evaluated too


def test_steps_are_kept_only_where_they_lower_that_landscapes_energy() -> None:
    """Without jumps and with steps 3 times IRED's, plain descent overshoots and climbs (on this oracle
    IRED's own step lands on the truth at the sharpest landscape); accept-if-lower never lets a
    landscape's energy rise from one step to the next."""
    _, problem, y0 = problem_of()
    for accept in (True, False):
        solver = AnnealedDescent(steps_per_landscape=3, step_scale=3.0, jump=False, accept_if_lower=accept, clamp=None)
        history = solver.solve(Oracle(), problem.x, y0, record_history=True).energy_history
        blocks = history.reshape(10, 4, -1)  # per landscape: its start, then 3 steps
        rises = (blocks[:, 1:] > blocks[:, :-1] + 1e-6).any()
        assert bool(rises) != accept


def test_fixed_entries_stay_exact_and_answers_stay_in_range() -> None:
    _, problem, y0 = problem_of()
    mask = torch.zeros_like(y0, dtype=torch.bool)
    mask[:, 1] = True
    values = torch.full_like(y0, 0.3)
    constraint = AnswerConstraint(mask=mask, values=values)
    torch.manual_seed(0)
    energy = MLPEnergy(6, 6, width=16, depth=3, landscapes=10, head="squared_norm")
    result = AnnealedDescent(clamp=0.5).solve(energy, problem.x, y0 * 3, constraint=constraint)
    assert torch.equal(result.y[:, 1], values[:, 1])
    assert float(result.y.abs().max()) <= 0.5


def test_energy_and_use_are_checked() -> None:
    _, problem, y0 = problem_of(4)
    with pytest.raises(ValueError, match="has none.*energy.landscapes=10"):
        AnnealedDescent().solve(MLPEnergy(6, 6), problem.x, y0)
    with pytest.raises(ValueError, match=r"solver.landscapes=4, but the energy has 10 .*leave solver.landscapes unset"):
        AnnealedDescent(landscapes=4).solve(Oracle(), problem.x, y0)
    with pytest.raises(ValueError, match="objective=ired"):
        AnnealedDescent().solve(Oracle(), problem.x, y0, differentiable=True)
    with pytest.raises(ValueError, match="steps_per_landscape"):
        AnnealedDescent(steps_per_landscape=0)


def test_grad_tol_stops_instances_early_on_the_last_landscape() -> None:
    _, problem, y0 = problem_of()
    result = AnnealedDescent(grad_tol=1e-4).solve(Oracle(), problem.x, y0)
    assert bool((result.status == int(Status.CONVERGED)).all())
    assert int(result.steps.max()) < 60  # the last landscape's jump solves it; the steps after are saved


def test_best_of_n_over_annealed_descents_keeps_the_lowest_final_energy() -> None:
    torch.manual_seed(0)
    energy = MLPEnergy(6, 6, width=16, depth=3, landscapes=10, head="squared_norm")
    _, problem, y0 = problem_of()
    one = AnnealedDescent().solve(energy, problem.x, y0)
    best = BestOfN(AnnealedDescent(), starts=3, init="uniform").solve(
        energy, problem.x, y0, generator=torch.Generator().manual_seed(0)
    )
    assert best.y.shape == y0.shape
    assert bool((best.energy <= one.energy + 1e-6).all())


def test_each_evaluation_budget_is_its_own_annealed_solve() -> None:
    """A 2-step budget spends its steps on the sharpest landscapes, not the first 2 of a 60-step path."""
    task, problem, _ = problem_of()
    torch.manual_seed(0)
    energy = MLPEnergy(6, 6, width=16, depth=3, landscapes=10, head="squared_norm")
    model = EnergyModel(energy, AnnealedDescent(), IREDObjective(), replay_capacity=0)
    preds = model.predict(task, problem, [2, 60], torch.Generator().manual_seed(5))
    y0 = task.init_answer(problem, torch.Generator().manual_seed(5))
    alone = AnnealedDescent().solve(energy, problem.x, y0, budget=2)
    assert torch.equal(preds.answers["2"], alone.y)
    assert bool((preds.info["landscape"] == 0).all())


def test_adaptive_halting_over_an_annealed_descent_shrinks_the_batch_and_follows_the_same_path() -> None:
    """Each instance stops where a rule says (here: instance i after 7 + 9i steps, across landscapes),
    leaves the batch, and holds the iterate the plain annealed solve had after that many steps."""
    from irem.solvers.adaptive import AdaptiveDescent
    from irem.solvers.halting import HaltingRule

    class StopAt(HaltingRule):
        name = "stop_at"

        def __init__(self, at: torch.Tensor) -> None:
            self.at = at

        def start(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
            return {"at": self.at.clone()}

        def update(self, state, info):
            return info.t >= state["at"], state

    _, problem, y0 = problem_of(4)
    stops = torch.tensor([7, 16, 25, 34])
    plain = AnnealedDescent(jump=False).solve(Oracle(), problem.x, y0, budget=40, snapshots=stops.tolist())
    energy = Oracle()
    halted = AdaptiveDescent(AnnealedDescent(jump=False), rules=[StopAt(stops)], max_steps=40, min_steps=1).solve(
        energy, problem.x, y0
    )
    assert halted.steps.tolist() == stops.tolist() and halted.stopped_by.tolist() == [0, 0, 0, 0]
    for i, t in enumerate(stops.tolist()):
        torch.testing.assert_close(halted.y[i], plain.snapshots[t][i], rtol=0, atol=0)
    sizes = [len(k) for k in energy.calls]
    assert sizes[0] == 4 and min(sizes) == 1 and sizes == sorted(sizes, reverse=True)  # the batch shrank
