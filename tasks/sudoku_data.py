"""Sudoku boards on disk: CSV files in the public layouts, a cache of generated sets keyed by their
seed, and the fixed splits a Sudoku task draws from.

CSV layouts read by `load_csv` (one board per line, 81 characters in row-major order, `0` or `.`
for a blank):

    RRN (Palm et al.)        no header; puzzle,solution
    Kaggle 1M / 9M sudoku    header quizzes,solutions (or puzzle,solution)
    Sudoku-Extreme (HRM)     header source,question,answer,rating

A file of puzzles alone is solved on load. `save_csv` writes the same layout, so generated sets
round-trip through files.

Generated sets are cached as `<cache>/sudoku-v<version>-n<n>-givens<lo>-<hi>-seed<seed>.pt`, with
<cache> the `cache_dir` argument, else `$IREM_CACHE/sudoku`, else `~/.cache/irem/sudoku`; the
version is `GENERATOR_VERSION`, so a changed generator never reads an old set.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from irem.data_files import csv_rows, shown
from irem.tasks.sudoku_boards import (
    CELLS,
    GENERATOR_VERSION,
    UNITS,
    Boards,
    generate,
    generate_band,
    is_valid_solution,
    keeps_givens,
    solve,
    violations,
)

PUZZLE_COLUMNS = ("quizzes", "quiz", "puzzle", "puzzles", "question", "questions")
SOLUTION_COLUMNS = ("solutions", "solution", "answer", "answers")
CACHE_ENV = "IREM_CACHE"
MIN_BOARD_LIKE = 17  # characters of digits from which a header-less file's field is read as a board
CHUNK = 4096  # boards generated per batch: bounds the solver's memory and keeps a seed's boards fixed

# The splits a Sudoku task uses: train and test in the SAT-Net band (31-42 givens there; 30-45 here),
# harder at 24-29, hardest at the fewest givens the generator reaches (0 = minimal puzzles).
SPLIT_GIVENS: dict[str, int | tuple[int, int]] = {"train": (30, 45), "test": (30, 45), "harder": (24, 29), "hardest": 0}

_DIGIT_OF = np.full(256, -1, dtype=np.int8)  # character code -> digit, -1 for a character no board holds
_DIGIT_OF[ord("0") : ord("9") + 1] = np.arange(10)
_DIGIT_OF[ord(".")] = 0


def _is_board(field: str) -> bool:
    field = field.strip()
    return len(field) == CELLS and all(ch in "0123456789." for ch in field)


def _board_like(field: str) -> bool:
    """Digits and dots only, long enough to be meant as a board (a malformed one included): how a
    header-less file's board columns are told from an index or a rating column."""
    field = field.strip()
    return len(field) >= MIN_BOARD_LIKE and all(ch in "0123456789." for ch in field)


def _is_header(row: list[str]) -> bool:
    """A first row with any character a board row never holds (a letter) is a header."""
    return any(ch not in "0123456789. \t" for field in row for ch in field)


def _describe_clash(board: Tensor) -> str:
    """Where a board repeats a digit, in words (rows, columns and boxes numbered from 1)."""
    kinds = ("row", "column", "box")
    for u, cells in enumerate(UNITS):
        values = [int(board[c]) for c in cells if int(board[c])]
        for d in range(1, 10):
            if values.count(d) > 1:
                return f"digit {d} appears {values.count(d)} times in {kinds[u // 9]} {u % 9 + 1}"
    return "no digit repeats"


def _column(header: list[str], wanted: str | int | None, known: tuple[str, ...], path: Path, what: str) -> int | None:
    names = [h.strip().lower() for h in header]
    if isinstance(wanted, int):
        if not 0 <= wanted < len(names):
            raise ValueError(f"{path}: {what} column {wanted} is out of range; the header has {len(names)} columns.")
        return wanted
    if wanted is not None:
        if wanted.lower() not in names:
            raise ValueError(f"{path}: no {what} column {wanted!r}; the header has {header}.")
        return names.index(wanted.lower())
    return next((names.index(k) for k in known if k in names), None)


def _read_rows(
    path: Path, puzzle_column: str | int | None, solution_column: str | int | None, max_rows: int | None
) -> tuple[list[int], list[str], list[str] | None]:
    """(line numbers, puzzle strings, solution strings or None) of a CSV file.

    The layout is decided by the first row's characters, never by whether its boards are well
    formed: a header holds letters. Without a header (RRN: puzzle,solution) the puzzle is the first
    field of digits at least `MIN_BOARD_LIKE` long and the field after it, when there is one, the
    solution; every row is then checked, so a malformed first row is an error on line 1, not a shift
    of the columns."""
    rows_read = csv_rows(path, "Sudoku file")
    first_line, first = next(rows_read, (0, None))
    if first is None:
        raise ValueError(f"{path}: the file holds no boards.")
    if not _is_header(first):  # no header (RRN): columns by position
        if isinstance(puzzle_column, str) or isinstance(solution_column, str):
            raise ValueError(f"{path}: the file has no header, so columns are chosen by index, not by name.")
        candidates = [i for i, field in enumerate(first) if _board_like(field)]
        if puzzle_column is None and not candidates:
            raise ValueError(f"{path}:{first_line}: no field is a board (81 digits, 0 or '.' for a blank): {first}.")
        p_col = candidates[0] if puzzle_column is None else puzzle_column
        s_col = solution_column
        if s_col is None and puzzle_column is None and p_col + 1 < len(first):
            s_col = p_col + 1
        rows = [(first_line, first)]
    else:
        p_col = _column(first, puzzle_column, PUZZLE_COLUMNS, path, "puzzle")
        if p_col is None:
            raise ValueError(
                f"{path}: no puzzle column in the header {first}; name it with puzzle_column= "
                f"(known names: {', '.join(PUZZLE_COLUMNS)})."
            )
        s_col = _column(first, solution_column, SOLUTION_COLUMNS, path, "solution")
        rows = []
    for line, row in rows_read:
        if max_rows is not None and len(rows) >= max_rows:
            break
        rows.append((line, row))
    if not rows:
        raise ValueError(f"{path}: the file has a header but no boards.")
    width = max(p_col, s_col if s_col is not None else -1) + 1
    for line, row in rows:
        if len(row) < width:
            raise ValueError(f"{path}:{line}: {len(row)} field(s), expected at least {width}.")
    lines = [line for line, _ in rows]
    puzzles = [row[p_col].strip() for _, row in rows]
    solutions = None if s_col is None else [row[s_col].strip() for _, row in rows]
    return lines, puzzles, solutions


def _parse(texts: list[str], lines: list[int], path: Path, what: str, blanks: bool) -> Tensor:
    """81-character strings as digits [N, 81] int8, or a ValueError naming the first bad line."""
    for i, text in enumerate(texts):
        if len(text) != CELLS:
            raise ValueError(f"{path}:{lines[i]}: {what} has {len(text)} characters; a board needs {CELLS}.")
    codes = np.frombuffer("".join(texts).encode("latin-1", errors="replace"), dtype=np.uint8).reshape(
        -1, CELLS
    )  # non-Latin-1: '?', refused below
    digits = _DIGIT_OF[codes]
    bad = digits < 0
    if not blanks:
        bad |= digits == 0
    if bad.any():
        i, c = np.argwhere(bad)[0]
        allowed = "digits 0-9 or '.' (a blank)" if blanks else "digits 1-9 (a solution has no blanks)"
        raise ValueError(
            f"{path}:{lines[i]}: {what} has {shown(texts[i][c])} at cell {c} (row {c // 9 + 1}, column {c % 9 + 1}); "
            f"expected {allowed}."
        )
    return torch.from_numpy(digits.copy())


def _first_failure(mask: Tensor, lines: list[int]) -> tuple[int, str]:
    i = int(torch.nonzero(mask).flatten()[0])
    more = int(mask.sum()) - 1
    return i, (f" ({more} more line(s) like it)" if more else "")


def load_csv(
    path: str | Path,
    puzzle_column: str | int | None = None,
    solution_column: str | int | None = None,
    *,
    allow_multiple: bool = False,
    measure_effort: bool = False,
    max_rows: int | None = None,
) -> Boards:
    """Read puzzles (and solutions) from a CSV file in one of the public layouts (module docstring).

    Columns are found by the header's names (quizzes/puzzle/question, solutions/solution/answer)
    or by position in a file without header; `puzzle_column` / `solution_column` name or index
    them when the file differs. Every puzzle is solved on load: one with no solution is an error,
    and so is one with several (even when the file gives one of them), unless `allow_multiple` keeps
    the file's solution or, without a solution column, the first one found. Every malformed board is
    a ValueError naming the file and line; the file is read as UTF-8 (irem/data_files.py). `guesses`
    is the solver's effort when the puzzles were searched, else -1. `max_rows` reads only the first
    boards of a large file.
    """
    path = Path(path)
    if max_rows is not None and int(max_rows) < 1:
        raise ValueError(f"load_csv: max_rows must be >= 1 (or None for the whole file), got {max_rows}.")
    lines, puzzle_texts, solution_texts = _read_rows(path, puzzle_column, solution_column, max_rows)
    puzzles = _parse(puzzle_texts, lines, path, "puzzle", blanks=True)
    clash = violations(puzzles) > 0
    if clash.any():
        i, more = _first_failure(clash, lines)
        raise ValueError(f"{path}:{lines[i]}: the givens contradict each other: {_describe_clash(puzzles[i])}{more}.")
    if solution_texts is not None:
        solutions = _parse(solution_texts, lines, path, "solution", blanks=False)
        invalid = ~is_valid_solution(solutions)
        if invalid.any():
            i, more = _first_failure(invalid, lines)
            raise ValueError(
                f"{path}:{lines[i]}: the solution is not a valid full grid: {_describe_clash(solutions[i])}{more}."
            )
        disagree = ~keeps_givens(puzzles, solutions)
        if disagree.any():
            i, more = _first_failure(disagree, lines)
            c = int(torch.nonzero((puzzles[i] > 0) & (puzzles[i] != solutions[i])).flatten()[0])
            raise ValueError(
                f"{path}:{lines[i]}: the solution disagrees with the givens at row {c // 9 + 1}, column {c % 9 + 1} "
                f"(given {int(puzzles[i, c])}, solution {int(solutions[i, c])}){more}."
            )
    guesses = torch.full((len(lines),), -1, dtype=torch.long)
    searched = solution_texts is None or measure_effort or not allow_multiple
    if searched:  # a given solution may be one of several: the search says whether it is the only one
        found = solve(puzzles, limit=2)
        for verdict, problem in ((0, "has no solution"), (2, "has more than one solution")):
            wrong = found.count == verdict
            if wrong.any() and not (verdict == 2 and allow_multiple):
                i, more = _first_failure(wrong, lines)
                given = " (the file gives one of them, so cell and board accuracy would measure different things)"
                fix = "; pass allow_multiple=True to keep the " + (
                    "first one found" if solution_texts is None else "file's"
                )
                raise ValueError(
                    f"{path}:{lines[i]}: the puzzle {problem}{given if verdict == 2 and solution_texts else ''}"
                    f"{more}{fix if verdict == 2 else ''}."
                )
        guesses = found.guesses
        if solution_texts is None:
            solutions = found.solution
    return Boards(puzzles, solutions, (puzzles > 0).sum(1), guesses)


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _board_strings(boards: Tensor, blank: str) -> list[str]:
    codes = boards.cpu().numpy().astype(np.uint8) + ord("0")
    codes[codes == ord("0")] = ord(blank)
    text = codes.tobytes().decode("ascii")
    return [text[i : i + CELLS] for i in range(0, len(text), CELLS)]


def save_csv(
    path: str | Path,
    puzzles: Tensor,
    solutions: Tensor | None = None,
    *,
    columns: tuple[str, str] | None = ("puzzle", "solution"),
    blank: str = "0",
) -> None:
    """Write boards in the layout `load_csv` reads, atomically.

    `columns` is the header (None writes none, as RRN's files); `blank` is "0" or ".". Without
    `solutions` the file holds puzzles only.
    """
    if blank not in ("0", "."):
        raise ValueError(f"save_csv: blank must be '0' or '.', got {blank!r}.")
    if solutions is not None and solutions.shape != puzzles.shape:
        raise ValueError(f"save_csv: puzzles {tuple(puzzles.shape)} and solutions {tuple(solutions.shape)} differ.")
    fields = [_board_strings(puzzles, blank)]
    if solutions is not None:
        fields.append(_board_strings(solutions, blank))
    lines = [",".join(row) for row in zip(*fields, strict=True)]
    if columns is not None:
        lines.insert(0, ",".join(columns[: len(fields)]))

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            f.write("\n".join(lines) + "\n")

    _write_atomically(Path(path), write)


# -- the cache of generated sets -----------------------------------------------------------------


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """Where generated sets live: `cache_dir`, else $IREM_CACHE/sudoku, else ~/.cache/irem/sudoku."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "irem") / "sudoku"


def _band(givens: int | tuple[int, int]) -> tuple[int, int]:
    low, high = (givens, givens) if isinstance(givens, int) else (int(givens[0]), int(givens[1]))
    if low > high:
        raise ValueError(f"givens band ({low}, {high}): low must not exceed high.")
    return low, high


def cached_generate(n: int, givens: int | tuple[int, int], seed: int, cache_dir: str | Path | None = None) -> Boards:
    """`n` generated puzzles, read from the cache when this (n, givens, seed, version) was made before.

    `givens` is one number for every board (0: minimal puzzles, see `generate`) or a band
    (low, high) drawn per board (`generate_band`). Boards are made in batches of `CHUNK` from
    torch.Generator().manual_seed(seed), so a seed always gives the same set. A cache file that
    cannot be read is made again, with a warning.
    """
    if int(n) < 1:
        raise ValueError(f"cached_generate: n must be >= 1, got {n}.")
    low, high = _band(givens)
    meta = {"n": int(n), "low": low, "high": high, "seed": int(seed), "version": GENERATOR_VERSION}
    path = cache_folder(cache_dir) / f"sudoku-v{GENERATOR_VERSION}-n{n}-givens{low}-{high}-seed{seed}.pt"
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            if saved.get("meta") == meta:
                return Boards(saved["puzzles"], saved["solutions"], saved["givens"], saved["guesses"])
            warnings.warn(f"{path} holds another set ({saved.get('meta')}); generating it again.", stacklevel=2)
        except Exception as err:  # a damaged file is replaced, not fatal
            warnings.warn(f"{path} could not be read ({err}); generating it again.", stacklevel=2)
    g = torch.Generator().manual_seed(int(seed))
    parts = []
    for start in range(0, int(n), CHUNK):
        size = min(CHUNK, int(n) - start)
        parts.append(generate(size, low, g) if low == high else generate_band(size, low, high, g))
    boards = Boards.cat(parts)
    _write_atomically(path, lambda tmp: torch.save({**boards.to_dict(), "meta": meta}, tmp))
    return boards


def split_seed(name: str, seed: int) -> int:
    """The seed of one split, derived from its name so no two splits share boards."""
    return zlib.crc32(f"sudoku:{name}:{seed}".encode())


def sudoku_splits(
    sizes: Mapping[str, int],
    seed: int = 0,
    cache_dir: str | Path | None = None,
    givens: Mapping[str, int | tuple[int, int]] = SPLIT_GIVENS,
) -> dict[str, Boards]:
    """The fixed, seeded splits: {name: Boards} for each name in `sizes` (train, test, harder, hardest).

    Each split has its own seed (`split_seed`) and its own band of givens (`SPLIT_GIVENS` unless
    `givens` says otherwise), and comes from the cache after the first call.
    """
    unknown = sorted(set(sizes) - set(givens))
    if unknown:
        raise ValueError(f"sudoku_splits: unknown split(s) {unknown}; choose from {sorted(givens)}.")
    return {
        name: cached_generate(size, givens[name], split_seed(name, seed), cache_dir) for name, size in sizes.items()
    }
