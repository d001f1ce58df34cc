"""Issue 27, item 5: data files are read exactly. A Sudoku CSV's layout never shifts because its first
row is malformed, a byte-order mark is not part of a board, a puzzle with two solutions is refused even
when the file gives one, and bytes that are not UTF-8, oversized fields and NUL bytes are named with
the file and line; the text corpus drops a byte-order mark and names the line of a bad byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from irem.data_files import DataFileError
from irem.tasks.sudoku_boards import generate
from irem.tasks.sudoku_data import load_csv
from irem.tasks.text import read_bytes


@pytest.fixture(scope="module")
def boards():
    return generate(4, 30, torch.Generator().manual_seed(0))


def board(digits: torch.Tensor) -> str:
    return "".join(str(int(d)) for d in digits)


def rows(boards, n: int = 4) -> list[str]:
    return [f"{board(boards.puzzles[i])},{board(boards.solutions[i])}" for i in range(n)]


def write(tmp_path: Path, lines: list[str], name: str = "boards.csv", prefix: bytes = b"", encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(prefix + ("\n".join(lines) + "\n").encode(encoding))
    return path


def test_a_malformed_first_puzzle_is_an_error_not_a_shift_of_the_columns(tmp_path: Path, boards) -> None:
    lines = rows(boards)
    lines[0] = lines[0][1:]  # 80 characters: the old reader took the solution column for the puzzles
    with pytest.raises(ValueError, match=r"boards\.csv:1: puzzle has 80 characters; a board needs 81"):
        load_csv(write(tmp_path, lines))


def test_a_malformed_first_solution_is_an_error_not_a_dropped_column(tmp_path: Path, boards) -> None:
    lines = rows(boards)
    puzzle, solution = lines[0].split(",")
    lines[0] = f"{puzzle},{solution[:-1]}"
    with pytest.raises(ValueError, match=r"boards\.csv:1: solution has 80 characters"):
        load_csv(write(tmp_path, lines))
    lines[0] = f"{puzzle},"
    with pytest.raises(ValueError, match=r"boards\.csv:1: solution has 0 characters"):
        load_csv(write(tmp_path, lines))


@pytest.mark.parametrize("header", [False, True])
def test_a_byte_order_mark_is_not_part_of_the_first_board(tmp_path: Path, boards, header: bool) -> None:
    lines = (["puzzle,solution"] if header else []) + rows(boards)
    loaded = load_csv(write(tmp_path, lines, prefix=b"\xef\xbb\xbf"))
    assert torch.equal(loaded.puzzles, boards.puzzles) and torch.equal(loaded.givens, boards.givens)
    assert int(loaded.givens.max()) < 81


def test_a_puzzle_with_two_solutions_is_refused_even_when_the_file_gives_one(tmp_path: Path, boards) -> None:
    lines = rows(boards)
    lines[2] = f"{'0' * 81},{board(boards.solutions[2])}"  # the empty grid: any full grid solves it
    path = write(tmp_path, lines)
    with pytest.raises(ValueError, match=r"boards\.csv:3: the puzzle has more than one solution \(the file gives one"):
        load_csv(path)
    assert len(load_csv(path, allow_multiple=True)) == 4  # on request, the file's solution is kept


def test_bytes_that_are_not_utf8_are_read_past_where_unused_and_named_where_used(tmp_path: Path, boards) -> None:
    lines = ["source,puzzle,solution"] + [f"caf\u00e9 {i},{r}" for i, r in enumerate(rows(boards))]
    loaded = load_csv(write(tmp_path, lines, encoding="latin-1"))  # a Latin-1 é in a column never read
    assert torch.equal(loaded.solutions, boards.solutions)
    bad = rows(boards)
    bad[1] = "\u00e9" + bad[1][1:]
    with pytest.raises(ValueError, match=r"boards\.csv:2: puzzle has byte 0xE9 \(not UTF-8.*at cell 0"):
        load_csv(write(tmp_path, bad, encoding="latin-1"))


def test_an_oversized_field_or_a_nul_byte_is_named_with_the_file_and_line(tmp_path: Path, boards) -> None:
    lines = rows(boards)
    lines.insert(2, "x" * 200_000)
    with pytest.raises(DataFileError, match=r"boards\.csv:3: cannot be read as a CSV Sudoku file: a field is longer"):
        load_csv(write(tmp_path, lines))
    path = write(tmp_path, rows(boards), name="nul.csv")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\x00", 1))
    with pytest.raises(ValueError, match=r"nul\.csv:2: puzzle has 82 characters"):  # the NUL is read as a character
        load_csv(path)


def test_the_text_corpus_drops_a_byte_order_mark_and_names_the_line_of_a_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\nworld\n")
    assert read_bytes(str(path), encoding="utf-8") == b"hello\nworld\n"
    assert read_bytes(str(path)) == path.read_bytes()  # raw bytes: the file exactly, mark included
    path.write_bytes(b"one\ntwo\nthr\xe9e\n")
    with pytest.raises(ValueError, match=r"corpus\.txt is not valid utf-8: .* at byte offset 11, line 3"):
        read_bytes(str(path), encoding="utf-8")
