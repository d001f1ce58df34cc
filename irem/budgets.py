"""Step budgets: the rule every command and predictor checks them by, and the default list.

Plain Python, so a predictor (irem/predictor.py) checks its budgets without the configuration layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from irem.errors import SettingError

# The step budgets irem-train's evaluation, irem-eval and irem-study report when none are given.
DEFAULT_BUDGETS = (1, 2, 5, 10, 20, 40, 80)


def check_budgets(budgets: Sequence[int], minimum: int = 0, owner: str = "", name: str = "budgets") -> list[int]:
    """Sorted distinct step budgets, each >= `minimum`; the labels of a prediction's answers are
    their string forms. `owner` names who refused them (a baseline's predict, a study), `name` the
    setting they came from (eval.budgets), so the message says what to change.

    Budget 0 is the start itself (a descent's random y0, a recurrent baseline's initial readout),
    so predictors accept it; a study and a denoiser need at least one step. The commands check
    eval.budgets before training with the same rule.
    """
    wanted = sorted({int(b) for b in budgets})
    where = f"{owner}: " if owner else ""
    if not wanted:
        raise SettingError(f"{where}{name} is empty; give at least one step budget, e.g. {name}=[1,2,5,10].")
    if wanted[0] < minimum:
        raise SettingError(
            f"{where}{name} must be step counts >= {minimum}, e.g. {name}=[1,2,5,10]; got {list(budgets)}."
        )
    return wanted
