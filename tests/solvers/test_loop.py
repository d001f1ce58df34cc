"""solvers/loop.py: the one loop every solve runs (phases, budgets, snapshots, statuses, records).

Single-phase solves are tested through their solvers (test_gradient_descent.py, test_adaptive.py);
these are the loop's own rules across phases, which the annealed solver and IRED's negatives use.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_gradient_descent import DT, NaNForFirst, Quadratic, quadratic_problem

from irem.problem import Status
from irem.solver import SolveRequest
from irem.solvers.loop import Halting, Phase, descend
from irem.solvers.step import DescentStep
from irem.solvers.transforms.accept import AcceptIfLower


def step(size: float, accept: bool = False) -> DescentStep:
    return DescentStep(torch.tensor(math.log(size), dtype=DT), [AcceptIfLower()] if accept else [])


def two_phases(energy, n_first: int = 3, n_second: int = 4) -> list[Phase]:
    return [
        Phase(energy, step(0.5), n_first, landscape=1),
        Phase(energy, step(0.1, accept=True), n_second, landscape=0),
    ]


def test_phases_run_in_turn_and_their_counts_add_up() -> None:
    x, y0 = quadratic_problem(n=4)
    energy = Quadratic(3)
    request = SolveRequest(record_history=True, record_trajectory=True, snapshots=(0, 3, 7))
    r = descend(two_phases(energy), x, y0, request, budget=7)
    assert r.steps.tolist() == [7] * 4 and r.evaluations.tolist() == [9] * 4  # 7 steps and 2 phase starts
    assert r.energy_history.shape == (9, 4) and len(r.trajectory) == 8
    assert r.landscape.tolist() == [0] * 4 and bool((r.status == int(Status.MAX_STEPS)).all())
    # the first phase is three plain steps of 0.5: error * (1 - 0.5 w) each
    w, b = x[:, 1], x[:, 0]
    torch.testing.assert_close(r.snapshots[3] - b, (y0 - b) * (1 - 0.5 * w) ** 3)
    assert torch.equal(r.snapshots[0], y0) and torch.equal(r.snapshots[7], r.y)
    # the second phase starts where the first ended, on its own step, and never raises the energy
    assert (r.energy_history[5:].diff(dim=0) <= 0).all()


def test_an_instance_that_diverged_in_one_phase_stays_put_and_the_rest_are_untouched() -> None:
    x, y0 = quadratic_problem(n=4)
    bad = descend(two_phases(NaNForFirst(3, bad_from=2)), x, y0, SolveRequest(), budget=7)
    rest = descend(two_phases(Quadratic(3)), x[1:], y0[1:], SolveRequest(), budget=7)
    assert int(bad.status[0]) == int(Status.DIVERGED) and int(bad.landscape[0]) == 1  # where it diverged
    assert int(bad.steps[0]) == 2 and math.isnan(float(bad.energy[0]))
    for name in ("y", "steps", "status", "energy", "best_y", "best_energy", "best_step", "landscape"):
        assert torch.equal(getattr(bad, name)[1:], getattr(rest, name)), name


def test_halting_across_phases_writes_each_instance_where_it_stopped() -> None:
    from irem.solvers.halting import BudgetCap

    x, y0 = quadratic_problem(n=4)
    plain = descend(two_phases(Quadratic(3)), x, y0, SolveRequest(snapshots=(5,)), budget=7)
    halted = descend(two_phases(Quadratic(3)), x, y0, SolveRequest(), budget=7, halting=Halting([BudgetCap(5)]))
    assert halted.steps.tolist() == [5] * 4 and halted.stopped_by.tolist() == [0] * 4
    assert torch.equal(halted.y, plain.snapshots[5]) and halted.landscape.tolist() == [0] * 4


def test_budgets_and_snapshots_out_of_range_name_the_solver() -> None:
    x, y0 = quadratic_problem(n=2)
    with pytest.raises(ValueError, match="Annealed: budget must be >= 0"):
        descend(two_phases(Quadratic(3)), x, y0, SolveRequest(), budget=-1, owner="Annealed")
    with pytest.raises(ValueError, match=r"Annealed: snapshots \[9\] must lie in \[0, budget=7\]"):
        descend(two_phases(Quadratic(3)), x, y0, SolveRequest(snapshots=(9,)), budget=7, owner="Annealed")
