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


def test_eval_of_a_missing_run_dir_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "missing"
    assert irem_eval(monkeypatch, f"run_dir={missing}") == (
        1,
        f"irem-eval: run_dir={missing} does not exist. "
        "Give the folder of a trained run (irem-train writes outputs/<name>, with checkpoints/last.pt inside).",
    )
    assert not missing.exists()


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
