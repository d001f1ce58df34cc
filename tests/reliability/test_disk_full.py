"""Issue 27, items 3 and 4: a full disk (or another failing write) is one message naming what was being
written, the space needed and free, and what was kept, however torch would have reported it; and a
start on a full disk leaves nothing that refuses the next run.

The end-to-end cases run irem-train on a real small tmpfs, which needs the right to mount (root, as on
CI's machines); they are skipped with the reason where the machine does not allow it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import finish, start
from tiny_runs import TRAIN, tiny_trainer

from irem.checkpoint import CheckpointError, load, previous_checkpoint
from irem.run_lock import LOCK, run_lock


def test_a_full_disk_during_a_save_is_one_message_and_keeps_the_checkpoint(out_dir: Path, monkeypatch) -> None:
    trainer = tiny_trainer(out_dir, 4, checkpoint_every=2)
    real_fsync, calls = os.fsync, {"n": 0}

    def full_disk(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint's data does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError) as err:
        trainer.fit()
    message = str(err.value)
    assert message.startswith(f"No space left on the device to write checkpoint {trainer.checkpoint_path}")
    assert "it needs about" in message and "free" in message
    assert f"the previous checkpoint {trainer.checkpoint_path} is kept" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one message, no chained tracebacks
    assert load(trainer.checkpoint_path)["iteration"] == 2
    assert sorted(p.name for p in trainer.checkpoint_path.parent.iterdir()) == ["last.pt"]  # no temp left


def test_another_write_failure_is_named_with_its_errno(out_dir: Path, monkeypatch) -> None:
    trainer = tiny_trainer(out_dir, 2, checkpoint_every=2)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(CheckpointError, match=r"Could not write checkpoint .*Input/output error \(errno 5\)"):
        trainer.fit()
    assert not any(trainer.checkpoint_path.parent.iterdir())


def test_a_lock_file_that_cannot_be_written_is_removed(out_dir: Path, monkeypatch) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    with (
        pytest.raises(CheckpointError, match="No space left on the device to write the run's lock file"),
        run_lock(out_dir),
    ):
        pass
    assert not (out_dir / LOCK).exists()
    monkeypatch.undo()
    with run_lock(out_dir):  # the next start is not refused
        assert (out_dir / LOCK).exists()


def test_an_empty_lock_file_left_by_an_older_version_does_not_refuse(out_dir: Path) -> None:
    (out_dir / LOCK).write_text("")
    with run_lock(out_dir):
        assert (out_dir / LOCK).read_text().split()[0] == str(os.getpid())


# -- on a real full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test and unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with a ballast file."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return ballast


def test_a_disk_that_fills_during_training_ends_with_one_message(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    args = [*TRAIN, "trainer.iterations=100000", "trainer.checkpoint_every=1", f"hydra.run.dir={run_dir}"]
    proc = start("irem-train", args, small_disk.parent)
    ckpt = run_dir / "checkpoints" / "last.pt"
    end = time.monotonic() + 60
    while not previous_checkpoint(ckpt).exists():
        assert proc.poll() is None and time.monotonic() < end, finish(proc).stderr
        time.sleep(0.05)
    ballast = fill(small_disk)
    done = finish(proc)
    assert done.returncode == 1, done.stderr
    assert f"irem-train: No space left on the device to write checkpoint {ckpt}" in done.stderr
    assert f"the previous checkpoint {ckpt} is kept" in done.stderr and "Traceback" not in done.stderr
    kept = load(ckpt)["iteration"]
    assert kept >= 1 and not list(ckpt.parent.glob("*.tmp")) and not (run_dir / LOCK).exists()
    ballast.unlink()
    resumed = finish(
        start("irem-train", [*TRAIN, f"trainer.iterations={kept + 2}", f"hydra.run.dir={run_dir}"], small_disk.parent)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming from {ckpt}" in resumed.stdout and load(ckpt)["iteration"] == kept + 2


def test_a_start_on_a_full_disk_leaves_nothing_that_refuses_the_next_run(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    ballast = fill(small_disk)
    args = [*TRAIN, "trainer.iterations=2", f"hydra.run.dir={run_dir}"]
    done = finish(start("irem-train", args, small_disk.parent))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "No space left on the device" in done.stderr and not (run_dir / LOCK).exists()
    ballast.unlink()
    again = finish(start("irem-train", args, small_disk.parent))
    assert again.returncode == 0, again.stderr
