"""The errors irem's commands print as messages, not tracebacks, and the message for an unknown name.

Plain Python: the contracts (irem.task, irem.solver, ...) raise these without importing Hydra or the
configuration layer.
"""

from __future__ import annotations

import difflib
import signal


class SettingError(ValueError):
    """A setting a command cannot use (an unknown solver, a level the task rejects, a misspelt
    solver setting): the message says what was wrong and lists the valid choices, and the
    commands print it without a traceback."""


def unknown_key_message(path: str, key: str, valid: list[str]) -> str:
    """ "Unknown key '<path>'. Did you mean '<closest>'? Valid keys: ..." for a key not in `valid`."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown key '{path}'.{hint} Valid keys: {', '.join(valid)}."


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after checkpointing a whole iteration; `signum` says which,
    so a command exits with that signal's status (130, 143) rather than a traceback."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)


class TrainingDiverged(FloatingPointError):
    """The loss turned non-finite, lost its gradient (every instance diverged) or exceeded
    trainer.max_loss: training stops rather than checkpoint what follows. The message names the last
    good checkpoint (or says there is none) and the remedy."""
