"""tasks/text.py: byte stream, contiguous disjoint splits, seeded windows, the flat per-position layout."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from irem.tasks.text import VOCAB_SIZE, TextTask, decode, default_corpus, encode


@pytest.fixture(scope="module")
def task() -> TextTask:
    return TextTask(context=16, test_size=32, val_size=24)


def test_default_corpus_is_pydoc_topics(task: TextTask) -> None:
    text = default_corpus()
    assert len(text) > 400_000 and "assert" in text
    assert task.stream.dtype == torch.uint8 and task.stream.numel() == len(text.encode("utf-8"))
    assert decode(encode("héllo")) == "héllo"
    assert task.dims() == {"vocab_size": VOCAB_SIZE, "context": 16}


def test_splits_are_disjoint_contiguous_regions(task: TextTask) -> None:
    (_, a0, a1), (_, b0, b1), (_, c0, c1) = (task.regions[s] for s in ("train", "val", "test"))
    assert a0 == 0 and a1 == b0 and b1 == c0 and c1 == task.stream.numel()
    assert math.isclose((b1 - b0) / c1, 0.05, abs_tol=1e-3)
    for name, size in (("train", 32), ("val", 24), ("test", 32)):
        starts = task.split(name).info["starts"]
        _, begin, end = task.regions[name]
        assert starts.numel() == size
        # every byte a window reads (context inputs and the last target) lies inside its region
        assert int(starts.min()) >= begin and int(starts.max()) + task.context + 1 <= end


def test_splits_are_deterministic_under_the_seed(task: TextTask) -> None:
    again = TextTask(context=16, test_size=32, val_size=24)
    other = TextTask(context=16, test_size=32, val_size=24, split_seed=99)
    for name in ("val", "test"):
        assert torch.equal(task.split(name).x.tokens, again.split(name).x.tokens)
        assert not torch.equal(task.split(name).x.tokens, other.split(name).x.tokens)
    assert not torch.equal(task.split("val").x.tokens[:24], task.split("test").x.tokens[:24])


def test_batches_are_seeded_and_targets_are_the_next_bytes(task: TextTask) -> None:
    a = task.sample(8, torch.Generator().manual_seed(3))
    b = task.sample(8, torch.Generator().manual_seed(3))
    c = task.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(a.x.tokens, b.x.tokens) and not torch.equal(a.x.tokens, c.x.tokens)
    assert a.num_instances == 8 * 16 and a.target.shape == (8 * 16,)
    starts = a.info["starts"]
    expected = task.stream[starts[:, None] + torch.arange(1, 17)].long()
    assert torch.equal(a.target.reshape(8, 16), expected)
    assert torch.equal(a.x.tokens[:, 1:], expected[:, :-1])
    assert torch.equal(a.difficulty[:16], torch.arange(1.0, 17.0))


def test_loss_metrics_and_check_on_flat_logits(task: TextTask) -> None:
    p = task.sample(2, torch.Generator().manual_seed(0))
    y = task.init_answer(p, torch.Generator().manual_seed(0))
    assert y.shape == (32, VOCAB_SIZE)
    perfect = torch.nn.functional.one_hot(p.target, VOCAB_SIZE).float() * 50
    assert bool(task.check(p, perfect).all()) and float(task.loss(p, perfect).max()) < 1e-6
    uniform = torch.zeros(32, VOCAB_SIZE)
    m = task.metrics(p, uniform)
    assert torch.allclose(m["bits_per_byte"], torch.full((32,), 8.0))
    assert torch.equal(task.decode(p, perfect), p.target)


def test_ood_file_and_clear_errors(tmp_path) -> None:
    train, ood = tmp_path / "a.txt", tmp_path / "b.txt"
    train.write_text("abcdefghij" * 100)
    ood.write_text("0123456789" * 10)
    task = TextTask(context=8, path=str(train), ood_path=str(ood), test_size=4, val_size=4)
    assert set(task.split_levels()) == {"train", "val", "test", "ood"}
    assert set(decode(task.split("ood").x.tokens.flatten())) <= set("0123456789")
    with pytest.raises(ValueError, match="Valid splits: train, val, test, ood"):
        task.split("harder")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        TextTask(path=str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match=r"holds 1000 bytes; at context=200 it needs at least 4020 bytes"):
        TextTask(context=200, path=str(train))
    with pytest.raises(ValueError, match="split_fractions"):
        TextTask(split_fractions=(0.5, 0.5))


def test_evaluation_batches_whole_windows_and_runs_end_to_end(task: TextTask) -> None:
    """Evaluation cuts text splits by window (a window holds `context` predicted tokens)."""
    from irem.baselines.transformer import TransformerPP
    from irem.evaluation import evaluate

    problem = task.split("val")
    parts = list(task.eval_batches(problem, 3 * task.context + 5))
    assert [p.num_instances for p in parts[:-1]] == [3 * task.context] * (len(parts) - 1)
    assert torch.equal(torch.cat([p.target for p in parts]), problem.target)
    assert torch.equal(torch.cat([p.x.tokens for p in parts]), problem.x.tokens)
    torch.manual_seed(0)
    model = TransformerPP(vocab_size=VOCAB_SIZE, context=task.context, width=16, depth=1, heads=2)
    rows = evaluate(task, model, splits=["val"], budgets=[1], batch_size=2 * task.context)
    whole = {r["metric"]: r["value"] for r in rows}
    with torch.no_grad():
        y = model.predict(task, problem, [1], torch.Generator()).answers["1"]
    expected = {k: float(v.double().mean()) for k, v in task.metrics(problem, y).items()}
    assert whole.keys() == expected.keys()
    for k in expected:
        assert whole[k] == pytest.approx(expected[k], rel=1e-5), k


def test_builtin_texts_by_name() -> None:
    from irem.tasks.text import BUILTIN_TEXTS

    task = TextTask(context=8, ood_path="builtin:python-source", test_size=4, val_size=4)
    assert "def " in decode(task.regions["ood"][0][:5000])
    assert set(BUILTIN_TEXTS) == {"pydoc", "python-license", "python-source"}
    with pytest.raises(ValueError, match="Unknown builtin text 'nope'. Valid choices: pydoc, python-license"):
        TextTask(ood_path="builtin:nope")


def test_hugging_face_loader_on_a_local_file(tmp_path) -> None:
    pytest.importorskip("datasets")
    file = tmp_path / "corpus.txt"
    file.write_text("first line of text\nsecond line\n" * 20)
    task = TextTask(context=8, hf_dataset="text", hf_data_files=str(file), test_size=4, val_size=4)
    assert decode(task.stream) == "\n".join(["first line of text", "second line"] * 20)
    with pytest.raises(ValueError, match="has no column 'body'. Valid columns: text"):
        TextTask(context=8, hf_dataset="text", hf_data_files=str(file), hf_field="body")
    with pytest.raises(ValueError, match="either path or hf_dataset"):
        TextTask(path=str(file), hf_dataset="text")


def test_without_datasets_the_loader_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # an import of it fails, as when it is not installed
    with pytest.raises(ImportError, match=r'pip install "irem\[hf\]"'):
        TextTask(context=8, hf_dataset="text", hf_data_files="corpus.txt")


def test_the_hugging_face_test_skips_cleanly_without_datasets(tmp_path) -> None:
    """`datasets` is the optional extra irem[hf], not part of dev: without it the loader's test skips."""
    (tmp_path / "datasets.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'datasets'\", name='datasets')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    test = f"{Path(__file__).resolve()}::test_hugging_face_loader_on_a_local_file"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
