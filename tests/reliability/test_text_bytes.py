"""The text task trains on a file's bytes as they are (tasks/text.py): a Latin-1 or binary file
round-trips byte for byte through the task's windows, `encoding` decodes on request and names the
file when it cannot, a corpus too short for its windows is refused with its size and the minimum,
the builtin corpora keep their bytes, and irem-generate prints control bytes as visible escapes."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import pytest
import torch

from irem.generation import printable
from irem.tasks.text import TextTask, default_corpus, minimum_bytes, read_bytes

SMALL = {"context": 8, "test_size": 16, "val_size": 16}


def latin1_file(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.txt"
    path.write_bytes(("Le café du garçon était très crémeux; à bientôt, Noël!\n" * 40).encode("latin-1"))
    return path


def binary_file(tmp_path: Path) -> Path:
    rng = random.Random(0)
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4 + bytes(rng.randrange(256) for _ in range(3000)))
    return path


def assert_windows_are_the_file(task: TextTask, data: bytes) -> None:
    """Every window's inputs and next-byte targets are the file's bytes at its start, exactly."""
    for split in ("train", "val", "test"):
        problem = task.split(split) if split != "train" else task.windows_from("train", 32, torch.Generator())
        tokens, targets = problem.x.tokens, problem.target.view(-1, task.context)
        for start, window, target in zip(problem.info["starts"].tolist(), tokens, targets, strict=True):
            assert bytes(window.tolist()) == data[start : start + task.context]
            assert bytes(target.tolist()) == data[start + 1 : start + task.context + 1]


@pytest.mark.parametrize("make", [latin1_file, binary_file], ids=["latin-1", "binary"])
def test_a_non_utf8_file_round_trips_byte_for_byte_through_the_windows(make, tmp_path) -> None:
    path = make(tmp_path)
    data = path.read_bytes()
    task = TextTask(path=str(path), **SMALL)
    assert bytes(task.stream.tolist()) == data  # no U+FFFD (EF BF BD) anywhere
    assert_windows_are_the_file(task, data)
    ood = TextTask(path=str(path), ood_path=str(path), **SMALL)
    assert bytes(ood.regions["ood"][0].tolist()) == data


def test_encoding_decodes_on_request_and_names_the_file_when_it_cannot(tmp_path) -> None:
    latin = latin1_file(tmp_path)
    task = TextTask(path=str(latin), encoding="latin-1", **SMALL)
    assert bytes(task.stream.tolist()) == latin.read_bytes().decode("latin-1").encode("utf-8")
    with pytest.raises(
        ValueError, match=rf"{latin.name} is not valid utf-8: .* at byte offset 6, line 1 .*encoding=null"
    ):
        TextTask(path=str(latin), encoding="utf-8", **SMALL)
    with pytest.raises(ValueError, match=r"unknown encoding 'latin-9x' for .*latin1\.txt.*utf-8, latin-1"):
        TextTask(path=str(latin), encoding="latin-9x", **SMALL)


def test_an_empty_or_too_short_file_is_refused_with_its_size_and_the_minimum(tmp_path) -> None:
    need = minimum_bytes(8, (0.9, 0.05, 0.05))
    assert need == 180  # a 9-byte window in the 5% test region: 9 / 0.05
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"path '.*empty\.txt' holds 0 bytes \(it is empty\).* at least {need} bytes"):
        TextTask(path=str(empty), **SMALL)
    short = tmp_path / "short.txt"
    short.write_bytes(b"x" * (need - 1))
    with pytest.raises(ValueError, match=rf"short\.txt' holds {need - 1} bytes; .*at least {need} bytes"):
        TextTask(path=str(short), **SMALL)
    short.write_bytes(b"x" * need)  # exactly the minimum: every region has its one window
    assert TextTask(path=str(short), **SMALL).split("test").x.tokens.shape == (16, 8)
    tiny_ood = tmp_path / "ood.txt"
    tiny_ood.write_bytes(b"abc")
    with pytest.raises(ValueError, match=r"ood_path '.*ood\.txt' holds 3 bytes; .*at least context \+ 1 = 9"):
        TextTask(path=str(short), ood_path=str(tiny_ood), **SMALL)


# the builtin corpora as this Python ships them; their bytes are what runs trained on before
BUILTIN_SHA256 = {
    (3, 11, 7): {
        "pydoc": (466195, "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"),
        "python-source": (261193, "27116c6981358fef832c5f519660034a41aeb8b9217a8becfe04e41412c8739e"),
    }
}


def test_the_builtin_corpora_keep_their_bytes() -> None:
    assert read_bytes("builtin:pydoc") == default_corpus().encode("utf-8")
    assert bytes(TextTask(**SMALL).stream.tolist()) == default_corpus().encode("utf-8")
    pinned = BUILTIN_SHA256.get(tuple(sys.version_info[:3]))
    if pinned is None:
        pytest.skip(f"the builtin corpora's hashes are pinned for Python 3.11.7, not {sys.version.split()[0]}")
    for name, (length, digest) in pinned.items():
        data = read_bytes(f"builtin:{name}")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (length, digest), name


def test_generated_control_bytes_are_printed_as_visible_escapes() -> None:
    raw = "ok\x1b[2J\x1b[31mred\x08\x08\x07\r\x00\x7f\x9b tab\tnew\nline café"
    shown = printable(raw)
    assert shown == "ok\\x1b[2J\\x1b[31mred\\x08\\x08\\x07\\x0d\\x00\\x7f\\x9b tab\tnew\nline café"
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in shown)
