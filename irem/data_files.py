"""Reading the data files tasks load, exactly and with errors that name the file and the line.

Every loader reads text through here, so no outcome depends on the locale: files are UTF-8, a
byte-order mark is dropped (a spreadsheet's "CSV UTF-8" starts with one), and a byte that is not
UTF-8 (Latin-1 `é`, say) is kept as a lone surrogate: harmless in a column the loader never reads,
and named as that byte, with the file, line and position, in one it does (`shown`). The csv module's
own errors (a field over its size limit, a NUL byte) become a `DataFileError` naming the file, the
line and what to check, never a bare `_csv.Error`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

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
