"""Issue 27, items 1, 7 and 9: a checkpoint proves its integrity on every load, a file that is not an
irem checkpoint or is unsafe is named as such, and a torch whose safe loading is not safe is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tiny_runs import same_tensors, tiny_trainer

from irem.build import load_run
from irem.checkpoint import (
    CheckpointError,
    CorruptedCheckpoint,
    content_digest,
    load,
    load_run_state,
    previous_checkpoint,
    run_checkpoint,
)


def flip_a_weight_byte(path: Path, weight: torch.Tensor) -> None:
    """Flip one byte inside the stored data of `weight` (a tensor of the checkpoint), as a disk or a
    copy would: the zip structure stays intact, so torch reads the file without complaint."""
    data = bytearray(path.read_bytes())
    raw = weight.detach().contiguous().numpy().tobytes()
    at = data.find(raw)
    assert at >= 0, "the weight's bytes were not found in the file"
    data[at + len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def trained(out_dir: Path):
    trainer = tiny_trainer(out_dir, 4, checkpoint_every=2)
    trainer.fit()
    return trainer


def test_the_digest_sees_every_kind_of_change() -> None:
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 3, "config": {"a": [1, 2.5, None, "x"]}}
    digest = content_digest(state)
    assert content_digest({**state}) == digest
    changed = [
        {**state, "model": {"w": torch.arange(6.0).reshape(3, 2)}},  # shape
        {**state, "model": {"w": torch.arange(6.0).reshape(2, 3).double()}},  # dtype
        {**state, "model": {"w": torch.arange(6.0).reshape(2, 3) + 1e-7}},  # one ulp-scale change
        {**state, "iteration": 4},
        {**state, "config": {"a": [1, 2.5, None, "y"]}},
        {**state, "config": {"a": [1, "2.5", None, "x"]}},  # a type, not only a value
    ]
    assert all(content_digest(c) != digest for c in changed)


def test_a_flipped_byte_in_the_weights_is_refused_by_every_load(trained, out_dir: Path) -> None:
    path = trained.checkpoint_path
    flip_a_weight_byte(path, trained.model.energy.net[0].weight)
    assert torch.load(path, weights_only=True)["iteration"] == 4  # torch itself reads it without a word
    with pytest.raises(CorruptedCheckpoint, match=rf"Checkpoint {path} is corrupted.*digest"):
        load(path)
    with pytest.raises(CorruptedCheckpoint) as err:  # irem-eval, irem-study, composition
        load_run(out_dir)
    assert f"checkpoint={previous_checkpoint(path)}" in str(err.value) and "iteration 2" in str(err.value)


def test_a_resume_falls_back_to_the_previous_checkpoint_with_a_note(trained, out_dir: Path, capsys) -> None:
    path = trained.checkpoint_path
    assert load(previous_checkpoint(path))["iteration"] == 2  # the save at 4 kept the one at 2
    flip_a_weight_byte(path, trained.model.energy.net[0].weight)
    resumed = tiny_trainer(out_dir, 6, checkpoint_every=2)
    resumed.fit()
    err = capsys.readouterr().err
    assert "is corrupted" in err and "resuming from the previous checkpoint" in err and "(iteration 2)" in err
    assert (path.parent / "last.pt.corrupted").exists()  # kept for inspection, out of the way
    reference = tiny_trainer(out_dir.parent / "reference", 6, checkpoint_every=2)
    reference.fit()
    assert same_tensors(load(path)["model"], load(reference.checkpoint_path)["model"])  # 2 -> 6 as if never hurt


def test_a_corrupted_checkpoint_without_a_sound_previous_one_says_start_over(trained) -> None:
    path = trained.checkpoint_path
    previous_checkpoint(path).unlink()
    flip_a_weight_byte(path, trained.model.energy.net[0].weight)
    with pytest.raises(CorruptedCheckpoint, match="nothing to resume from: train again with resume=false"):
        tiny_trainer(trained.out_dir, 6).fit()


def test_irem_eval_names_a_corrupted_checkpoint_without_a_traceback(trained, out_dir: Path) -> None:
    from commands import finish, start

    flip_a_weight_byte(trained.checkpoint_path, trained.model.energy.net[0].weight)
    done = finish(start("irem-eval", [f"run_dir={out_dir}"], out_dir.parent))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"Checkpoint {trained.checkpoint_path} is corrupted" in done.stderr


def test_a_plain_state_dict_is_named_as_such(out_dir: Path) -> None:
    path = run_checkpoint(out_dir)
    path.parent.mkdir(parents=True)
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not an irem-train checkpoint: it holds a dict with keys weight, bias"):
        load_run_state(path)
    with pytest.raises(CheckpointError, match="plain state_dict"):
        load_run(out_dir)


class Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_crafted_pickle_is_called_unsafe_not_damaged(how: str, tmp_path: Path) -> None:
    path, marker = tmp_path / "last.pt", tmp_path / "executed"
    if how == "torch.save":
        torch.save({"model": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"model": Payload(marker)}, protocol=4))
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "is unsafe and was not loaded" in str(err.value) and "damaged" not in str(err.value)
    assert not marker.exists()


def test_a_truncated_file_is_called_damaged(trained) -> None:
    path = trained.checkpoint_path
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        load(path)


def test_a_torch_whose_safe_loading_can_run_code_is_refused(trained, monkeypatch) -> None:
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(CheckpointError, match=r"torch 2\.5\.1 .*CVE-2025-32434.*torch>=2\.6"):
        load(trained.checkpoint_path)


def test_the_package_requires_a_torch_with_safe_loading() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    torch_req = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch") and "geometric" not in d)
    assert torch_req.replace(" ", "") == "torch>=2.6"
