"""tasks/sudoku_data.py: CSV files in the RRN, Kaggle and Sudoku-Extreme layouts round-trip through
the writer, malformed boards fail with the file and line, the cache is read on the second call and
keyed by the generator's version, and the splits keep their bands of givens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import irem.tasks.sudoku_data as sudoku_data
from irem.tasks.sudoku_boards import generate, is_valid_solution, keeps_givens
from irem.tasks.sudoku_data import (
    cache_folder,
    cached_generate,
    load_csv,
    save_csv,
    split_seed,
    sudoku_splits,
)

VALID = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


@pytest.fixture(scope="module")
def boards():
    return generate(12, torch.tensor([0, 20, 25, 30, 35, 40] * 2), torch.Generator().manual_seed(0))


def text(board: torch.Tensor, blank: str = "0") -> str:
    return "".join(str(int(d)) if int(d) else blank for d in board)


@pytest.mark.parametrize(
    ("columns", "blank"), [(("quizzes", "solutions"), "0"), (("puzzle", "solution"), "."), (None, "0")]
)
def test_round_trip(tmp_path, boards, columns, blank):
    path = tmp_path / "boards.csv"
    save_csv(path, boards.puzzles, boards.solutions, columns=columns, blank=blank)
    first = path.read_text().splitlines()[0]
    assert first == (",".join(columns) if columns else f"{text(boards.puzzles[0], blank)},{text(boards.solutions[0])}")
    loaded = load_csv(path)
    assert torch.equal(loaded.puzzles, boards.puzzles) and torch.equal(loaded.solutions, boards.solutions)
    assert torch.equal(loaded.givens, boards.givens)
    assert torch.equal(loaded.guesses, boards.guesses)  # every puzzle is searched: uniqueness is checked
    assert load_csv(path, allow_multiple=True).guesses.tolist() == [-1] * 12  # not searched: the file's solutions
    assert torch.equal(load_csv(path, allow_multiple=True, measure_effort=True).guesses, boards.guesses)
    assert len(load_csv(path, max_rows=5)) == 5


def test_sudoku_extreme_layout(tmp_path, boards):
    """HRM's CSV: source,question,answer,rating with '.' blanks; extra columns are ignored."""
    path = tmp_path / "train.csv"
    rows = [
        f"puzzles{i},{text(p, '.')},{text(s)},{i}"
        for i, (p, s) in enumerate(zip(boards.puzzles, boards.solutions, strict=True))
    ]
    path.write_text("source,question,answer,rating\n" + "\n".join(rows) + "\n")
    loaded = load_csv(path)
    assert torch.equal(loaded.puzzles, boards.puzzles) and torch.equal(loaded.solutions, boards.solutions)


def test_named_columns(tmp_path, boards):
    path = tmp_path / "odd.csv"
    save_csv(path, boards.puzzles, boards.solutions, columns=("grid", "filled"))
    with pytest.raises(ValueError, match=r"odd.csv: no puzzle column in the header \['grid', 'filled'\]"):
        load_csv(path)
    loaded = load_csv(path, puzzle_column="grid", solution_column="filled")
    assert torch.equal(loaded.solutions, boards.solutions)
    with pytest.raises(ValueError, match="no solution column 'answer'"):
        load_csv(path, puzzle_column="grid", solution_column="answer")
    # a header with a puzzle column only: the puzzles are solved
    assert torch.equal(load_csv(path, puzzle_column=0).solutions, boards.solutions)


def test_puzzles_alone_are_solved(tmp_path, boards):
    path = tmp_path / "quizzes.csv"
    save_csv(path, boards.puzzles, columns=("quizzes", "solutions"))
    assert path.read_text().splitlines()[0] == "quizzes"
    loaded = load_csv(path)
    assert torch.equal(loaded.solutions, boards.solutions)
    assert torch.equal(loaded.guesses, boards.guesses)


def test_puzzles_alone_must_be_unique(tmp_path, boards):
    loose = boards.puzzles.clone()
    loose[3, loose[3] > 0] = 0  # an empty board: many solutions
    path = tmp_path / "loose.csv"
    save_csv(path, loose)
    with pytest.raises(ValueError, match=r"loose.csv:5: the puzzle has more than one solution.*allow_multiple=True"):
        load_csv(path)
    loaded = load_csv(path, allow_multiple=True)
    assert bool(is_valid_solution(loaded.solutions).all()) and bool(keeps_givens(loose, loaded.solutions).all())
    # no clash among the givens, but no digit left for cell 8 of row 1
    dead = torch.zeros(1, 81, dtype=torch.int8)
    dead[0, :8] = torch.arange(1, 9)
    dead[0, 8 + 9 * 4] = 9
    save_csv(path, dead, columns=None)
    with pytest.raises(ValueError, match=r"loose.csv:1: the puzzle has no solution"):
        load_csv(path)


def malformed(puzzle: str, solution: str) -> str:
    good_p = "0" * 9 + VALID[9:]
    return f"quizzes,solutions\n{good_p},{VALID}\n\n{puzzle},{solution}\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (malformed("0" * 80, VALID), r"bad.csv:4: puzzle has 80 characters; a board needs 81"),
        (malformed("x" + "0" * 80, VALID), r"bad.csv:4: puzzle has 'x' at cell 0 \(row 1, column 1\)"),
        (malformed("0" * 81, "0" + VALID[1:]), r"bad.csv:4: solution has '0' at cell 0.*no blanks"),
        (
            malformed("55" + "0" * 79, VALID),
            r"bad.csv:4: the givens contradict each other: digit 5 appears 2 times in row 1",
        ),
        (
            malformed("0" * 81, VALID[1] + VALID[0] + VALID[2:]),
            r"bad.csv:4: the solution is not a valid full grid: digit 3 appears 2 times in column 1",
        ),
        (
            malformed("1" + "0" * 80, VALID),
            r"bad.csv:4: the solution disagrees with the givens at row 1, column 1 \(given 1, solution 5\)",
        ),
        ("quizzes,solutions\n" + "0" * 81 + "\n", r"bad.csv:2: 1 field\(s\), expected at least 2"),
        ("quizzes,solutions\n", r"bad.csv: the file has a header but no boards"),
        ("", r"bad.csv: the file holds no boards"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_csv(path)


def test_cache_is_read_on_the_second_call(tmp_path, monkeypatch):
    first = cached_generate(6, (30, 45), seed=3, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["sudoku-v1-n6-givens30-45-seed3.pt"]

    def fail(*args, **kwargs):
        raise AssertionError("the cached set was generated again")

    monkeypatch.setattr(sudoku_data, "generate", fail)
    monkeypatch.setattr(sudoku_data, "generate_band", fail)
    second = cached_generate(6, (30, 45), seed=3, cache_dir=tmp_path)
    for field in ("puzzles", "solutions", "givens", "guesses"):
        assert torch.equal(getattr(first, field), getattr(second, field)), field
    # another seed, n, band or generator version is another file
    monkeypatch.undo()
    assert not torch.equal(cached_generate(6, (30, 45), seed=4, cache_dir=tmp_path).puzzles, first.puzzles)
    monkeypatch.setattr(sudoku_data, "GENERATOR_VERSION", 2)
    again = cached_generate(6, (30, 45), seed=3, cache_dir=tmp_path)
    assert torch.equal(again.puzzles, first.puzzles)  # the same generator, so the same boards
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == [
        "sudoku-v1-n6-givens30-45-seed3.pt",
        "sudoku-v1-n6-givens30-45-seed4.pt",
        "sudoku-v2-n6-givens30-45-seed3.pt",
    ]


def test_damaged_cache_file_is_made_again(tmp_path):
    path = tmp_path / "sudoku-v1-n4-givens0-0-seed0.pt"
    path.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="could not be read"):
        boards = cached_generate(4, 0, seed=0, cache_dir=tmp_path)
    assert torch.equal(cached_generate(4, 0, seed=0, cache_dir=tmp_path).puzzles, boards.puzzles)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IREM_CACHE", str(tmp_path / "env"))
    assert cache_folder() == tmp_path / "env" / "sudoku"
    assert cache_folder(tmp_path / "mine") == tmp_path / "mine"
    cached_generate(2, 40, seed=0)
    assert (tmp_path / "env" / "sudoku" / "sudoku-v1-n2-givens40-40-seed0.pt").exists()
    monkeypatch.delenv("IREM_CACHE")
    assert cache_folder() == Path.home() / ".cache" / "irem" / "sudoku"


def test_splits(tmp_path):
    splits = sudoku_splits({"train": 10, "test": 10, "harder": 6, "hardest": 6}, seed=0, cache_dir=tmp_path)
    for name, (low, high) in {"train": (30, 45), "test": (30, 45), "harder": (24, 29)}.items():
        givens = splits[name].givens
        assert int(givens.min()) >= low and int(givens.max()) <= high, name
    assert int(splits["hardest"].givens.max()) < 30
    assert not torch.equal(splits["train"].solutions, splits["test"].solutions)
    assert len({split_seed(name, 0) for name in ("train", "test", "harder", "hardest")}) == 4
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['val'\]"):
        sudoku_splits({"val": 3}, cache_dir=tmp_path)
