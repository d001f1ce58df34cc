"""The errors irem's commands print as messages, not tracebacks, and the message for an unknown name.

Plain Python: the contracts (irem.task, irem.solver, ...) raise these without importing Hydra or the
configuration layer.
"""

from __future__ import annotations

import difflib


class SettingError(ValueError):
    """A setting a command cannot use (an unknown solver, a level the task rejects, a misspelt
    solver setting): the message says what was wrong and lists the valid choices, and the
    commands print it without a traceback."""


def unknown_key_message(path: str, key: str, valid: list[str]) -> str:
    """ "Unknown key '<path>'. Did you mean '<closest>'? Valid keys: ..." for a key not in `valid`."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown key '{path}'.{hint} Valid keys: {', '.join(valid)}."
