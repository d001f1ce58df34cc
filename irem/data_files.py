"""Reading the data files tasks load, exactly and with errors that name the file and the line.

Every loader reads text through here, so no outcome depends on the locale: files are UTF-8, a
byte-order mark is dropped (a spreadsheet's "CSV UTF-8" starts with one), and a byte that is not
UTF-8 (Latin-1 `é`, say) is kept as a lone surrogate: harmless in a column the loader never reads,
and named as that byte, with the file, line and position, in one it does (`shown`). The csv module's
own errors (a field over its size limit, a NUL byte) become a `DataFileError` naming the file, the
line and what to check, never a bare `_csv.Error`.

A task whose data may come from files opts into `ReadsFiles`: the commands read every file it names
before the first iteration (a bad line fails in seconds, not after training), and irem-eval,
irem-train and irem-study add splits read from a user's own files (`eval.files={mine: puzzles.csv}`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from irem.errors import SettingError

ENCODING = "utf-8-sig"  # UTF-8, with a byte-order mark dropped where there is one
ERRORS = "surrogateescape"  # bytes that are not UTF-8 survive as U+DC80..U+DCFF, one per byte


class DataFileError(ValueError):
    """A data file that cannot be read as the loader expects: the message names the file and line."""


def open_text(path: str | Path):
    """`path` opened for reading text the way every loader reads it (module docstring)."""
    return open(path, encoding=ENCODING, errors=ERRORS, newline="")


def shown(ch: str) -> str:
    """A character for a message: its repr, or "byte 0xE9 (not UTF-8)" for a byte kept undecoded."""
    if len(ch) == 1 and 0xDC80 <= ord(ch) <= 0xDCFF:
        return f"byte 0x{ord(ch) - 0xDC00:02X} (not UTF-8; save the file as UTF-8)"
    return repr(ch)


def csv_rows(path: str | Path, what: str = "data file") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty row of a CSV file, read as `open_text` reads it."""
    path = Path(path)
    with open_text(path) as f:
        reader = csv.reader(f)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                line = reader.line_num
                if "field larger than field limit" in str(err):
                    why = (
                        f"a field is longer than {csv.field_size_limit()} characters, far more than a {what} holds "
                        "(an unclosed quote, or not the right file?)"
                    )
                elif "NUL" in str(err):
                    why = "it holds a NUL byte (a binary file, or a file saved as UTF-16?)"
                else:
                    why = str(err)
                raise DataFileError(f"{path}:{line}: cannot be read as a CSV {what}: {why}.") from None
            if row:
                yield reader.line_num, row


@runtime_checkable
class ReadsFiles(Protocol):
    """What a task defines when its data may come from files (Sudoku's `train_path` and `files`)."""

    def read_files(self) -> None:
        """Read and check every file the task names now, raising an error that names the file and
        line of the first problem: called before the first training iteration."""

    def add_files(self, files: Mapping[str, str]) -> None:
        """Add (or replace) a split per entry, {split name: path}, read and checked now."""


def missing_files(files: Mapping[str, Any], key: str) -> list[str]:
    """`key.<name>=<path>` for each entry of `files` that is not a file (what a command refuses before
    it loads or trains anything)."""
    return [f"{key}.{name}={path}" for name, path in files.items() if not Path(str(path)).expanduser().is_file()]


def read_task_files(task: Any) -> None:
    """Every data file `task` names, read and checked now (a task that reads none: nothing), so a
    bad file is refused before training with its file and line, as a SettingError the commands print."""
    if isinstance(task, ReadsFiles):
        try:
            task.read_files()
        except (OSError, ValueError) as err:
            raise SettingError(
                f"task '{getattr(task, 'name', type(task).__name__)}' cannot read its data: {err}"
            ) from None


def add_task_files(task: Any, files: Mapping[str, Any], key: str = "eval.files") -> list[str]:
    """Splits read from `files` ({split: path}) added to `task` and read now, before any evaluation;
    their names, for the command to evaluate. A task that reads no files refuses them, saying what
    it evaluates instead."""
    if not files:
        return []
    name = getattr(task, "name", type(task).__name__)
    if not isinstance(task, ReadsFiles):
        raise SettingError(
            f"{key} names {', '.join(map(str, files))}, but task '{name}' reads no data files: it generates its "
            f"problems. Drop {key}; for other difficulty levels give eval.levels=[...] instead."
        )
    missing = missing_files(files, key)
    if missing:
        raise SettingError(f"{', '.join(missing)}: no such file. Give the path of a data file of task '{name}'.")
    try:
        task.add_files({str(k): str(v) for k, v in files.items()})
    except (OSError, ValueError) as err:
        raise SettingError(f"{key}: task '{name}' cannot read it: {err}") from None
    return [str(k) for k in files]
