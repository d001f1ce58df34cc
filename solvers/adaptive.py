"""Adaptive descent: each instance stops when a halting rule says so, and leaves the batch.

`AdaptiveDescent` wraps a descent solver (a `Descent` preset, or IRED's annealed descent) and runs the
same plan (solvers/descent.py) in the one loop with per-instance stopping rules from
`solvers/halting.py`. Compute really falls with the number of unfinished instances: when instances
stop, the loop indexes the active set (iterates, gradients, transform and rule state, the problem's
x, the energy's prepared input) down to the rest, so later steps run on a smaller batch; it does not
multiply updates by a mask. Stopped instances are written into full-size results at once.

Training does not halt: a differentiable solve (the IREM loss) is handed to the wrapped solver
unchanged, so a model trains with its plain descent and is evaluated adaptively. With
`descent=None` the solver wraps whatever solver the trained model already has (`with_base`),
which is how `irem-eval solver=adaptive` keeps the model's trained step size.

Records: per instance the steps used, status (CONVERGED when a rule stopped it, MAX_STEPS at the
budget, DIVERGED), the energy history (NaN after an instance stopped), the lowest-energy iterate
and snapshots at the requested budgets (an instance that stopped earlier keeps its final
iterate). `stopped_by` names the rule that stopped each instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from irem.energy import EnergyFunction
from irem.problem import SolveResult
from irem.solver import Solver, SolveRequest
from irem.solvers.descent import PhasedSolver, run_plan
from irem.solvers.halting import HaltingRule
from irem.solvers.loop import Halting
from irem.solvers.wrapper import WrapperSolver


class AdaptiveDescent(WrapperSolver):
    """Descend until every instance is stopped by one of `rules` or reaches `max_steps`.

    `min_steps`: no rule may stop an instance before this many steps. `compact_below`: drop the
    finished instances once the active ones are fewer than this fraction of the current batch
    (1.0: as soon as any stops; below 1 saves re-collating graph batches on every step, at the
    price of computing on a few finished instances whose updates are discarded meanwhile; 0 never
    compacts). The wrapped descent's own `grad_tol` stops an instance too (status converged, no
    rule named). An input that cannot pick the finished instances out (a text window whose
    positions have not all stopped: `InstanceInput.can_select`) keeps them in the batch, frozen,
    until it can.
    """

    config_name = "adaptive"
    adaptive = True

    def __init__(
        self,
        descent: Solver | None = None,
        rules: Sequence[HaltingRule] = (),
        max_steps: int = 80,
        min_steps: int = 1,
        compact_below: float = 1.0,
    ) -> None:
        super().__init__(descent)
        if max_steps < 0:
            raise ValueError(f"AdaptiveDescent: max_steps must be >= 0, got {max_steps}.")
        if min_steps < 0:
            raise ValueError(f"AdaptiveDescent: min_steps must be >= 0, got {min_steps}.")
        if not 0 <= compact_below <= 1:
            raise ValueError(f"AdaptiveDescent: compact_below must be in [0, 1], got {compact_below}.")
        bad = [type(r).__name__ for r in rules if not isinstance(r, HaltingRule)]
        if bad:
            raise TypeError(f"AdaptiveDescent: rules must be HaltingRule objects (solvers/halting.py), got {bad}.")
        self.rules = list(rules)
        self.max_steps = int(max_steps)
        self.min_steps = int(min_steps)
        self.compact_below = float(compact_below)

    def _wrapped(self) -> PhasedSolver:
        descent = super()._wrapped()
        if not isinstance(descent, PhasedSolver):
            raise TypeError(
                f"AdaptiveDescent wraps descent solvers whose solve the one loop runs (a Descent preset, or "
                f"solver=annealed); got {type(descent).__name__}."
            )
        return descent

    def run_inference(
        self, energy: EnergyFunction, x: Any, y0: Tensor, budget: int | None, request: SolveRequest
    ) -> SolveResult:
        T = self.max_steps if budget is None else int(budget)
        if T < 0:
            raise ValueError(f"AdaptiveDescent: budget must be >= 0, got {T}.")
        if any(r.needs_verifier for r in self.rules) and request.verify is None:
            raise ValueError(
                "AdaptiveDescent: a rule needs the task's verifier (verified), which this solve was not given; "
                "an energy model's predict passes Task.check as verify=..."
            )
        plan = self._wrapped().plan(energy, x, y0, T, request)
        plan.owner = type(self).__name__
        return run_plan(plan, x, y0, Halting(self.rules, self.min_steps, self.compact_below))
