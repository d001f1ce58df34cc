"""Settings objects that check themselves: the range rule every schema's fields go through, and
the trainer's settings with the one copy of their defaults.

Plain dataclasses with no configuration framework: the trainer (library code that passes
`Trainer(**settings)`) builds its settings here without importing Hydra; irem/config.py registers
the same class as irem-train's `trainer:` schema.
"""

from __future__ import annotations

import math
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, fields
from typing import Any

from irem.errors import SettingError


def is_whole(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value == int(value)
    )


def is_finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_ranges(settings: Any, section: str, rules: dict[str, tuple[Any, str]]) -> None:
    """Refuse the first field of a schema instance outside its range, naming the setting, its value,
    the valid range and the field's default (the one copy of it) as the fix. A rule is
    (predicate, range in words); a field set to None passes only when the predicate accepts None."""
    defaults = {f.name: f.default for f in fields(settings)}
    for name, (ok, valid) in rules.items():
        value = getattr(settings, name)
        if not ok(value):
            default = defaults.get(name, NO_DEFAULT)
            shown = "null" if default is None else default
            fix = (
                f"; e.g. {section}.{name}={shown} ({type(settings).__name__}'s default)"
                if default is not NO_DEFAULT
                else ""
            )
            raise SettingError(f"{section}.{name}={value!r} is out of range: it must be {valid}{fix}.")


@dataclass
class TrainerConfig:
    """The trainer's settings and the one copy of their defaults: irem-train's `trainer:` section
    and `Trainer(..., **settings)` in library code both start from these. configs/train.yaml sets
    its own short run on top (300 iterations at lr 1e-3)."""

    iterations: int = 300
    batch_size: int = 512
    lr: float = 1e-4
    optimizer: str = "adam"  # adam, adamw (decoupled weight decay) or sgd; library code may pass the class
    weight_decay: float = 0.0
    warmup: int = 0  # iterations of linear learning-rate warm-up
    lr_schedule: str = "constant"  # constant, linear, cosine or exponential, to min_lr_fraction * lr after warm-up
    min_lr_fraction: float = 0.1
    grad_clip: float | None = None
    log_every: int = 25
    checkpoint_every: int = 100
    val_every: int = 0
    # seconds of training (the loop's own time: no evaluation, validation or start-up), counted over
    # every invocation of a run, so a killed run resumed with the same command stops where it would
    # have (and a time-based lr_schedule decays over this total); a resume of a run that has spent it
    # trains nothing and says so. null: no limit. For equal wall-clock comparisons.
    time_limit: float | None = None
    progress: bool = True
    # stop, keeping the last checkpoint, once the training loss exceeds this: a run that explodes
    # (e.g. solver.step_size=1e12 trained on to a loss of 2.9e18) rather than learns; null: no bound
    max_loss: float | None = 1e6
    # an exponential moving average of the weights, evaluated in their place (IRED: 0.995, every
    # 10 optimizer steps); null: none, the trained weights are evaluated
    ema_decay: float | None = None
    ema_every: int = 1  # update the average every this many optimizer steps
    # ema_pytorch's warm-up: the u-th update uses min(ema_decay, 1 - (1 + u)^(-2/3)), so a short run's
    # average is not held back by its random initial weights; false: ema_decay from the first update
    ema_warmup: bool = True
    # after this many iterations of a fresh run, say (once) when the loss has not moved from its start,
    # and what to try (irem/callbacks.py: LearningCheck); 0: no check
    learning_check: int = 200

    def __post_init__(self) -> None:
        """Every range at construction: the commands build one from the composed `trainer:` section
        before anything trains (a log_every of 0 used to surface as a ZeroDivisionError at the
        first iteration), and `Trainer(**settings)` builds one from library code's settings."""
        check_ranges(
            self,
            "trainer",
            {
                "iterations": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0 (0 trains nothing)"),
                "batch_size": (lambda v: is_whole(v) and v >= 1, "a whole number >= 1"),
                "lr": (lambda v: is_finite(v) and v > 0, "a finite number > 0"),
                "weight_decay": (lambda v: is_finite(v) and v >= 0, "a finite number >= 0"),
                "warmup": (lambda v: is_whole(v) and v >= 0, "a whole number of iterations >= 0"),
                "min_lr_fraction": (lambda v: is_finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
                "grad_clip": (lambda v: v is None or (is_finite(v) and v >= 0), "null (no clipping) or a number >= 0"),
                "log_every": (lambda v: is_whole(v) and v >= 1, "a whole number of iterations >= 1"),
                "checkpoint_every": (lambda v: is_whole(v) and v >= 1, "a whole number of iterations >= 1"),
                "val_every": (lambda v: is_whole(v) and v >= 0, "a whole number of iterations >= 0 (0: no validation)"),
                "time_limit": (lambda v: v is None or (is_finite(v) and v >= 0), "null (no limit) or seconds >= 0"),
                "max_loss": (lambda v: v is None or (is_finite(v) and v > 0), "null (no bound) or a number > 0"),
                "ema_decay": (
                    lambda v: v is None or (is_finite(v) and 0 <= v < 1),
                    "null (no EMA) or a number in [0, 1)",
                ),
                "ema_every": (lambda v: is_whole(v) and v >= 1, "a whole number of optimizer steps >= 1"),
                "learning_check": (lambda v: is_whole(v) and v >= 0, "a whole number of iterations >= 0 (0: no check)"),
            },
        )
