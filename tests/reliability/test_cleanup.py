"""Issue 16, item 7: no leftovers and no overwrites. Stale temp files of a killed write are removed
when a run starts; a finished run's rerun keeps its summary (and JSON never gets NaN); irem-eval
creates nothing for a missing run_dir and never writes one run's results into another's folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from tiny_runs import tiny_trainer


def strict_json(text: str) -> dict:
    def no_constant(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


def test_stale_checkpoint_temps_are_removed_on_start(out_dir: Path, tmp_path: Path) -> None:
    folder = out_dir / "checkpoints"
    folder.mkdir()
    stale = [folder / ".last.pt.k2x9_a.tmp", folder / ".last.pt.zz.tmp"]
    keep = [folder / "notes.tmp", folder / ".other.pt.ab.tmp", out_dir / ".last.pt.ab.tmp"]
    for p in stale + keep:
        p.write_bytes(b"partial")
    tiny_trainer(out_dir, 1).fit()
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)  # only the checkpoint's own temp pattern, only in checkpoints/


def test_rerunning_a_finished_run_keeps_its_summary(out_dir: Path) -> None:
    tiny_trainer(out_dir, 3).fit()
    summary = out_dir / "train_summary.json"
    before = summary.read_text()
    assert strict_json(before)["iterations"] == 3
    again = tiny_trainer(out_dir, 3).fit(resume=True)
    assert summary.read_text() == before
    assert again["final_loss"] == strict_json(before)["final_loss"]  # the checkpoint keeps the last loss


def test_a_summary_without_a_loss_is_valid_json(out_dir: Path) -> None:
    """A run that trains no iteration has no final loss: null, not NaN."""
    tiny_trainer(out_dir, 0).fit()
    assert strict_json((out_dir / "train_summary.json").read_text())["final_loss"] is None


def trained(compose_config, run_dir: Path, *overrides: str) -> None:
    from irem.cli import _fit

    cfg = compose_config("train", ["task.size=3", "energy.width=16", "trainer.iterations=2", *overrides])
    cfg.trainer.progress, cfg.trainer.batch_size, cfg.name = False, 8, run_dir.name
    _fit(cfg, str(run_dir))


def irem_eval(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """irem-eval's entry point in this process (as the console script calls it): its exit status
    and the message it exits with."""
    from irem.cli import evaluate

    monkeypatch.setattr(sys, "argv", ["irem-eval", *args, "eval.budgets=[1]", "eval.splits=[test]", "threads=1"])
    try:
        evaluate()
    except SystemExit as stop:
        return (1, stop.code) if isinstance(stop.code, str) else (int(stop.code or 0), "")
    return 0, ""


def a_run(folder: Path) -> Path:
    """A folder the commands take for a trained run (its checkpoint file), without training one."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"")
    return folder


def test_eval_of_a_missing_run_dir_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    """The message lists the runs it finds, so it is checked from a folder of the test's own: run
    from a checkout where irem-train has made outputs/ (the README's first command), it used to
    list those runs and fail."""
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing"
    assert irem_eval(monkeypatch, f"run_dir={missing}") == (
        1,
        f"irem-eval: run_dir={missing} does not exist. "
        "Give the folder of a trained run (irem-train writes outputs/<name>, with checkpoints/last.pt inside). "
        f"No trained run was found in {tmp_path}/ or outputs/: train one with irem-train (it prints the folder "
        "it writes).",
    )
    assert not missing.exists()


def run_command(monkeypatch: pytest.MonkeyPatch, command: str, *args: str) -> tuple[int, str]:
    """An irem command's entry point in this process: its exit status and the message it exits with."""
    from irem import cli

    entry = {"irem-eval": cli.evaluate, "irem-generate": cli.generate, "irem-study": cli.study}[command]
    monkeypatch.setattr(sys, "argv", [command, *args])
    try:
        entry()
    except SystemExit as stop:
        return (1, stop.code) if isinstance(stop.code, str) else (int(stop.code or 0), "")
    return 0, ""


@pytest.mark.parametrize("command", ["irem-eval", "irem-generate", "irem-study"])
def test_a_run_dir_that_is_missing_or_not_a_run_lists_the_runs_that_exist(
    tmp_path: Path, monkeypatch, command: str
) -> None:
    """Issue 32, item 6: before, a folder without a checkpoint (or, for irem-generate and
    irem-study, a missing one) ended in Hydra's FileNotFoundError and left <run_dir>/<what>/<time>/
    behind; now each command names the runs found in outputs/ and beside run_dir, and makes nothing."""
    monkeypatch.chdir(tmp_path)
    a_run(tmp_path / "outputs" / "text-ebt_system2")
    a_run(tmp_path / "elsewhere" / "mine")
    empty = tmp_path / "elsewhere" / "empty"
    empty.mkdir()
    extra = ['prompt="The "'] if command == "irem-generate" else []
    status, message = run_command(monkeypatch, command, "run_dir=outputs/text-energy", *extra)
    assert status == 1 and message.startswith(f"{command}: run_dir=outputs/text-energy does not exist.")
    assert message.endswith("Trained runs found: outputs/text-ebt_system2.")
    status, message = run_command(monkeypatch, command, f"run_dir={empty}", *extra)
    assert status == 1 and f"run_dir={empty} is not a trained run: it has no checkpoints/last.pt" in message
    assert message.endswith(f"Trained runs found: {tmp_path / 'elsewhere' / 'mine'}, outputs/text-ebt_system2.")
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        [
            "outputs",
            "text-ebt_system2",
            "elsewhere",
            "mine",
            "empty",
            "checkpoints",
            "checkpoints",
            "last.pt",
            "last.pt",
        ]
    )  # nothing made: no eval/, generate/ or study/ folder


# The tests whose outcome could depend on the folder pytest runs in (they list trained runs).
CWD_SENSITIVE = [
    "test_eval_of_a_missing_run_dir_creates_nothing",
    "test_a_run_dir_that_is_missing_or_not_a_run_lists_the_runs_that_exist[irem-eval]",
]


def test_cwd_sensitive_tests_pass_from_a_folder_with_runs(tmp_path: Path) -> None:
    """Issue 32, item 2: the README's two commands in order (irem-train, which makes outputs/, then
    pytest) failed a test. The tests above run in a pytest started from a folder holding outputs/
    with runs in it, as the README leaves a checkout."""
    import os
    import subprocess

    a_run(tmp_path / "outputs" / "inverse-energy")
    a_run(tmp_path / "outputs" / "inverse-feedforward")
    root = Path(__file__).resolve().parents[2]
    here = Path(__file__).resolve()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--rootdir={root}",
            "-c",
            str(root / "pyproject.toml"),
        ]
        + [f"{here}::{name}" for name in CWD_SENSITIVE],
        cwd=tmp_path,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["inverse-energy", "inverse-feedforward"]


def test_eval_of_another_runs_checkpoint_is_refused_and_its_own_evaluates(
    tmp_path: Path, compose_config, monkeypatch
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    trained(compose_config, a)
    trained(compose_config, b, "baseline=feedforward")
    status, message = irem_eval(monkeypatch, f"run_dir={a}", f"checkpoint={b / 'checkpoints' / 'last.pt'}")
    assert status == 1 and "is of another run" in message and "baseline" in message
    assert f"Evaluate it with run_dir={b}." in message
    assert not (a / "eval").exists()  # nothing written into the other run's folder
    shutil.copy(a / "checkpoints" / "last.pt", a / "checkpoints" / "early.pt")
    assert irem_eval(monkeypatch, f"run_dir={a}", f"checkpoint={a / 'checkpoints' / 'early.pt'}") == (0, "")
    assert len(list((a / "eval").glob("*/eval.json"))) == 1
