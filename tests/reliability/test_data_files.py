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


# -- issue 32, items 8 and 10: files read before the first iteration; a run scored on one's own file --

SUDOKU = ["task=sudoku", "energy=sudoku_graph", "trainer.iterations=1", "trainer.batch_size=2", "task.test_size=4"]


def fit(compose_config, run_dir: Path, *overrides: str):
    from irem.cli import _fit

    cfg = compose_config("train", [*SUDOKU, *overrides])
    cfg.trainer.progress, cfg.name = False, run_dir.name
    return _fit(cfg, str(run_dir))


def bad_file(tmp_path: Path, boards) -> Path:
    return write(tmp_path, [*rows(boards, 2), "12345,678"], name="bad.csv")


@pytest.mark.parametrize("key", ["task.files={test: BAD}", "task.train_path=BAD"])
def test_a_bad_data_file_is_refused_before_the_first_iteration(tmp_path: Path, boards, compose_config, key) -> None:
    """Before: task.files was read only at evaluation (after 30 minutes with the Sudoku presets), and
    a bad train_path failed at the first step under a 20-line traceback."""
    from irem.errors import SettingError

    bad = bad_file(tmp_path, boards)
    run_dir = tmp_path / "run"
    with pytest.raises(SettingError, match=f"task 'sudoku' cannot read its data: {bad}:3: puzzle has 5 characters"):
        fit(compose_config, run_dir, key.replace("BAD", str(bad)), "eval.run=false")
    assert not (run_dir / "checkpoints").exists()  # not one iteration trained


@pytest.mark.parametrize("key", ["task.files={test: MISSING}", "task.train_path=MISSING"])
def test_a_missing_data_file_is_refused_with_its_setting(tmp_path: Path, compose_config, key) -> None:
    from irem.errors import SettingError

    missing = tmp_path / "none.csv"
    with pytest.raises(SettingError, match=f"is {missing}, which is not a file"):
        fit(compose_config, tmp_path / "run", key.replace("MISSING", str(missing)))


def irem_eval(monkeypatch, *args: str) -> tuple[int, str]:
    import sys

    from irem.cli import evaluate

    monkeypatch.setattr(sys, "argv", ["irem-eval", *args, "eval.budgets=[1]", "threads=1"])
    try:
        evaluate()
    except SystemExit as stop:
        return (1, stop.code) if isinstance(stop.code, str) else (int(stop.code or 0), "")
    return 0, ""


def test_a_trained_run_is_scored_on_a_file_named_on_the_command_line(
    tmp_path: Path, boards, compose_config, monkeypatch, capsys
) -> None:
    """Before: irem-eval refused task.* overrides, so scoring a Sudoku model on one's own puzzles took
    a script calling load_run and build_task. Now eval.files adds splits read from files, each read and
    checked before anything is evaluated (and, when missing, before the run is loaded)."""
    import json

    run_dir = tmp_path / "run"
    fit(compose_config, run_dir, "eval.run=false")
    mine = write(tmp_path, rows(boards), name="mine.csv")
    args = (f"run_dir={run_dir}", "eval.splits=[]")
    assert irem_eval(monkeypatch, *args, f"eval.files={{mine: {mine}}}") == (0, "")
    (found,) = run_dir.glob("eval/*/eval.json")
    scored = {(r["split"], r["metric"]): r["n"] for r in json.loads(found.read_text())}
    assert scored[("mine", "board_accuracy")] == 4
    assert "mine" in capsys.readouterr().out
    status, message = irem_eval(monkeypatch, *args, f"eval.files={{mine: {bad_file(tmp_path, boards)}}}")
    assert status == 1 and f"eval.files: task 'sudoku' cannot read it: {tmp_path / 'bad.csv'}:3:" in message
    capsys.readouterr()
    assert irem_eval(monkeypatch, *args, f"eval.files={{mine: {tmp_path / 'none.csv'}}}") == (2, "")
    assert f"eval.files.mine={tmp_path / 'none.csv'}: no such file." in capsys.readouterr().err
    assert len(list(run_dir.glob("eval/*/eval.json"))) == 1


def test_a_task_that_reads_no_files_refuses_eval_files(tmp_path: Path, boards, compose_config, monkeypatch) -> None:
    from irem.cli import _fit

    cfg = compose_config("train", ["task.size=3", "energy.width=16", "trainer.iterations=1", "eval.run=false"])
    cfg.trainer.progress, cfg.trainer.batch_size, cfg.name = False, 8, "run"
    _fit(cfg, str(tmp_path / "run"))
    mine = write(tmp_path, rows(boards), name="mine.csv")
    status, message = irem_eval(monkeypatch, f"run_dir={tmp_path / 'run'}", f"eval.files={{mine: {mine}}}")
    assert status == 1 and message == (
        "irem-eval: eval.files names mine, but task 'inverse' reads no data files: it generates its problems. "
        "Drop eval.files; for other difficulty levels give eval.levels=[...] instead."
    )


def irem_study(monkeypatch, *args: str) -> tuple[int, str]:
    import sys

    from irem.cli import study

    small = ["levels=[40]", "instances=2", "mixed=false", "solvers=[gd,adaptive]", "budgets=[1,2]", "plots=false"]
    monkeypatch.setattr(sys, "argv", ["irem-study", *args, *small, "progress=false", "threads=1"])
    try:
        study()
    except SystemExit as stop:
        return (1, stop.code) if isinstance(stop.code, str) else (int(stop.code or 0), "")
    return 0, ""


def test_a_study_covers_a_file_named_on_the_command_line(
    tmp_path: Path, boards, compose_config, monkeypatch, capsys
) -> None:
    """irem-study's `files` adds sets read from files beside the levels, checked before any work."""
    import json

    run_dir = tmp_path / "run"
    fit(compose_config, run_dir, "eval.run=false")
    mine = write(tmp_path, rows(boards), name="mine.csv")
    assert irem_study(monkeypatch, f"run_dir={run_dir}", f"files={{mine: {mine}}}") == (0, "")
    (found,) = run_dir.glob("study/*/study.json")
    record = json.loads(found.read_text())
    assert {(c["solver"], c["set"]) for c in record["cells"]} >= {("gd", "mine"), ("adaptive", "mine"), ("gd", "40")}
    assert [lv["level"] for lv in record["levels"] if lv["set"] == "mine"] == [None]  # no level of the sweep
    assert "mine" in capsys.readouterr().out
    capsys.readouterr()
    assert irem_study(monkeypatch, f"run_dir={run_dir}", f"files={{mine: {tmp_path / 'none.csv'}}}") == (2, "")
    assert f"files.mine={tmp_path / 'none.csv'}: no such file." in capsys.readouterr().err
    status, message = irem_study(monkeypatch, f"run_dir={run_dir}", f"files={{mine: {bad_file(tmp_path, boards)}}}")
    assert status == 1 and f"files: task 'sudoku' cannot read it: {tmp_path / 'bad.csv'}:3:" in message
