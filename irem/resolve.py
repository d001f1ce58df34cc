"""Named choices: a setting given by name (from a config) or as the object itself (from library code).

`resolve` looks a name up among the choices and refuses an unknown one listing them, in the style
of torch-geometric's resolvers; an object is taken as it is, so library code can pass an optimizer
class or an energy head of its own without adding it to any table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irem.errors import SettingError


def resolve(choice: Any, choices: Mapping[str, Any], what: str) -> Any:
    """`choices[choice]` for a name, `choice` itself otherwise."""
    if not isinstance(choice, str):
        return choice
    if choice not in choices:
        raise SettingError(
            f"Unknown {what} '{choice}'. Valid choices: {', '.join(choices)} (or pass the object itself)."
        )
    return choices[choice]


def learning_rate_schedule(choice: Any, final_fraction: float) -> Any:
    """The schedule `trainer.lr_schedule` names (irem/schedules.py), or the Schedule given."""
    from irem.schedules import KINDS, Schedule

    if isinstance(choice, str):
        resolve(choice, dict.fromkeys(KINDS), "lr_schedule")
        return Schedule(choice, final_fraction)
    return choice


def optimizer_class(choice: Any) -> Any:
    """The optimizer `trainer.optimizer` names (adam, adamw, sgd), or the class given."""
    import torch

    return resolve(choice, {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}, "optimizer")
