"""Byte-level language modelling: predict the next byte at every position of a window of text.

The corpus is one token stream of bytes (vocabulary 0..255, fixed, so any text file in any
encoding fits without building a vocabulary). The default corpus is the English documentation
that ships with CPython (`pydoc_data.topics`, about 460 KB), so the task runs offline on any
install; `path` reads any file instead, byte for byte as it is on disk (any encoding, even a
binary file: nothing is decoded or replaced), or a text that ships with Python by name
(`builtin:<name>`, `BUILTIN_TEXTS`, as UTF-8). `encoding` (default null: raw bytes) is for a
file in a legacy encoding whose characters should become the same bytes as in UTF-8 text: the
file is decoded strictly with it and re-encoded as UTF-8, and a byte that does not decode is an
error naming the file, the encoding and the offset. `hf_dataset` reads a Hugging Face dataset's text column
(needs the `datasets` package; `hf_dataset=text hf_data_files=<file>` reads a local file through
it, which is how it is tested offline). The stream is cut into contiguous train / val / test
regions (90/5/5 by default) so no validation window overlaps a training one; `ood_path` adds a
second text (a file or a builtin name) as an out-of-distribution split. A corpus too short for a
window of context + 1 bytes in every region (`minimum_bytes`) is refused with its size, before
any window is cut.

How it fits `Task`, an honest adaptation: an *instance* is one predicted token (DESIGN: per-position
energies), so a batch of `n` windows of `context` bytes is a `Problem` of n * context instances.
`x` is a `TokenWindows` (the [n, context] input ids, not a tensor, so `Problem.select`, which would
index windows by instance ids, refuses it instead of silently picking wrong rows); `target` is the
next-byte id of every position, flat [n * context]; a candidate answer `y` is flat logits
[n * context, vocab], row b * context + t being position t of window b. `difficulty` has no meaning
for text and is ignored when generating; each instance's recorded difficulty is the number of
context bytes its prediction sees (t + 1), which studies can cut results by. The `harder` split is
replaced by `ood` (present only with `ood_path`).
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from irem.problem import Problem
from irem.seeds import split_generator
from irem.task import Task

VOCAB_SIZE = 256  # bytes


@dataclass(frozen=True)
class TokenWindows:
    """The input ids of a batch of windows, [windows, context] int64.

    Its instances are the predicted positions, b * context + t for position t of window b
    (irem.problem.InstanceInput). The positions of a window share one forward pass, so only whole
    windows can be picked: `can_select` says whether an index list covers whole windows in order,
    which is what best-of-N (repeating a batch start by start) and the adaptive solver's compaction
    (once every position of a window has stopped) ask for.
    """

    tokens: Tensor

    @property
    def num_instances(self) -> int:
        return int(self.tokens.numel())

    def to(self, device: torch.device | str) -> TokenWindows:
        return TokenWindows(self.tokens.to(device))

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    def _windows(self, index: Tensor) -> Tensor | None:
        """The window of each run of `context` ids, or None when the ids split a window."""
        index = torch.as_tensor(index, dtype=torch.long).flatten()
        t = self.tokens.shape[1]
        if index.numel() % t:
            return None
        rows = index.view(-1, t)
        if not torch.equal(rows, rows[:, :1] + torch.arange(t, device=rows.device)) or bool((rows[:, 0] % t).any()):
            return None
        return rows[:, 0] // t

    def can_select(self, index: Tensor) -> bool:
        return self._windows(index) is not None

    def select_instances(self, index: Tensor) -> TokenWindows:
        windows = self._windows(index)
        if windows is None:
            t = self.tokens.shape[1]
            raise IndexError(
                f"TokenWindows picks whole windows of {t} positions (instance ids b * {t} + 0..{t - 1}); "
                "got ids that split a window."
            )
        return TokenWindows(self.tokens[windows.to(self.tokens.device)])

    def cat_instances(self, others: Sequence[TokenWindows]) -> TokenWindows:
        return TokenWindows(torch.cat([self.tokens, *(o.tokens for o in others)]))


def default_corpus() -> str:
    """CPython's pydoc topics, joined in sorted key order so the stream is the same everywhere."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def python_license() -> str:
    """CPython's LICENSE.txt: English legal prose, a domain the documentation hardly touches."""
    import sysconfig

    path = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if not path.is_file():
        raise FileNotFoundError(f"this Python install has no {path}; give ood_path a text file instead.")
    return path.read_text(encoding="utf-8", errors="replace")


def python_source() -> str:
    """The source of a few pure-Python standard modules: code with docstrings (about 250 KB)."""
    import argparse
    import difflib
    import inspect
    import textwrap
    import unittest.case

    return "\n".join(inspect.getsource(m) for m in (argparse, difflib, textwrap, unittest.case))


BUILTIN_TEXTS = {"pydoc": default_corpus, "python-license": python_license, "python-source": python_source}


def read_bytes(spec: str, encoding: str | None = None) -> bytes:
    """The bytes the task trains on: a file's raw bytes (`encoding=None`), or its text decoded
    strictly with `encoding` (a UTF-8 byte-order mark dropped) and re-encoded as UTF-8; a builtin
    text `builtin:<name>` as UTF-8.

    Raw by default because the vocabulary is bytes: decoding with replacement (as this once did)
    turned each Latin-1 `é` into the three bytes EF BF BD and a binary file into mostly U+FFFD.
    """
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN_TEXTS:
            raise ValueError(f"Unknown builtin text '{name}'. Valid choices: {', '.join(BUILTIN_TEXTS)}.")
        return BUILTIN_TEXTS[name]().encode("utf-8")
    file = Path(spec).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"TextTask: no text file at '{spec}' (or name a builtin text: builtin:pydoc, ...).")
    data = file.read_bytes()
    if encoding is None:
        return data
    try:
        codec = codecs.lookup(encoding).name
        text = data.decode("utf-8-sig" if codec == "utf-8" else encoding)  # a byte-order mark is not text
    except LookupError as err:
        raise ValueError(
            f"TextTask: unknown encoding '{encoding}' for {file}. Give a codec Python knows (utf-8, latin-1, "
            "cp1252, utf-16, ...), or encoding=null to train on the file's raw bytes."
        ) from err
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"TextTask: {file} is not valid {encoding}: {err.reason} at byte offset {err.start}, line {line} "
            f"({data[err.start : err.end]!r}). Give the file's real encoding (e.g. encoding=latin-1), "
            "or encoding=null to train on its raw bytes."
        ) from err
    return text.encode("utf-8")


def load_hf_text(
    name: str,
    config: str | None = None,
    split: str = "train",
    field: str = "text",
    data_files: str | list[str] | None = None,
) -> str:
    """The `field` column of a Hugging Face dataset split, joined by newlines.

    Downloads through `datasets.load_dataset` (a network and the hub's cache); `name="text"` with
    `data_files` reads local text files instead.
    """
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError(
            'hf_dataset needs the Hugging Face `datasets` package: pip install "irem[hf]" (or pip install datasets)'
        ) from err
    dataset = load_dataset(name, config, split=split, data_files=data_files)
    if field not in dataset.column_names:
        raise ValueError(
            f"Hugging Face dataset '{name}' has no column '{field}'. Valid columns: {', '.join(dataset.column_names)}."
        )
    return "\n".join(str(row) for row in dataset[field])


def as_stream(data: bytes) -> Tensor:
    """Bytes as a uint8 stream (a quarter of int32's memory for the whole corpus); empty is allowed,
    so the size check can name the file instead of torch.frombuffer failing on zero bytes."""
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def encode(text: str) -> Tensor:
    """A text's UTF-8 bytes as a uint8 stream."""
    return as_stream(text.encode("utf-8"))


def decode(ids: Tensor) -> str:
    """Bytes back to text; a window may start inside a multi-byte character, hence `replace`."""
    return bytes(ids.to(torch.uint8).tolist()).decode("utf-8", errors="replace")


def region_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """The train / val / test region sizes of an n-byte stream (the task's cuts)."""
    cut1 = int(n * fractions[0])
    cut2 = cut1 + int(n * fractions[1])
    return cut1, cut2 - cut1, n - cut2


def minimum_bytes(context: int, fractions: Sequence[float]) -> int:
    """The fewest bytes a corpus needs so that every region holds one window of context + 1 bytes."""
    need = int(context) + 1
    n = max(3 * need, int(need / min(fractions)) - 3)
    while min(region_sizes(n, fractions)) < need:
        n += 1
    return n


def windows(stream: Tensor, starts: Tensor, context: int) -> tuple[Tensor, Tensor]:
    """Input ids [n, context] and next-token ids [n, context] for windows at `starts`, by one gather."""
    index = starts[:, None] + torch.arange(context + 1)
    chunk = stream[index].long()
    return chunk[:, :-1], chunk[:, 1:]


class TextTask(Task):
    """Next-byte prediction on a corpus split into contiguous train / val / test regions."""

    name = "text"
    answer_kind = "categorical"  # next-byte logits per position, decoded by argmax
    level_label = None  # generate ignores its difficulty: no levels to sweep, only the splits
    difficulty_label = "bytes of context"
    error_metric = "ce"
    higher_is_better = frozenset({"accuracy"})

    def __init__(
        self,
        context: int = 64,
        path: str | None = None,
        ood_path: str | None = None,
        split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
        test_size: int = 256,
        val_size: int = 256,
        split_seed: int = 1234,
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        hf_split: str = "train",
        hf_field: str = "text",
        hf_data_files: str | None = None,
        encoding: str | None = None,
    ) -> None:
        super().__init__(0.0, 0.0, test_size=test_size, val_size=val_size, split_seed=split_seed)
        if path and hf_dataset:
            raise ValueError("TextTask: give either path or hf_dataset, not both.")
        if encoding is not None and hf_dataset:
            raise ValueError(
                "TextTask: encoding decodes the files of path / ood_path; a Hugging Face dataset's text is "
                "already decoded. Leave encoding=null with hf_dataset."
            )
        if int(context) < 1:
            raise ValueError(f"TextTask: context must be >= 1, got {context}.")
        fractions = tuple(float(f) for f in split_fractions)
        if len(fractions) != 3 or any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
            raise ValueError(
                f"TextTask: split_fractions must be three positive fractions (train, val, test) summing to 1, "
                f"got {split_fractions}."
            )
        self.context = int(context)
        self.unit_size = self.context  # generate(n) draws n windows of `context` predicted tokens
        self.path, self.ood_path, self.encoding = path, ood_path, encoding
        if hf_dataset:
            source = f"Hugging Face dataset '{hf_dataset}'"
            self.stream = encode(load_hf_text(hf_dataset, hf_config, hf_split, hf_field, hf_data_files))
        elif path:
            source = f"path '{path}'"
            self.stream = as_stream(read_bytes(path, encoding))
        else:
            source = "the default corpus (builtin:pydoc)"
            self.stream = encode(default_corpus())
        n = self.stream.numel()
        if min(region_sizes(n, fractions)) < self.context + 1:
            need = minimum_bytes(self.context, fractions)
            raise ValueError(
                f"TextTask: {source} holds {n} bytes{' (it is empty)' if n == 0 else ''}; at context={self.context} "
                f"it needs at least {need} bytes (a window of context + 1 = {self.context + 1} bytes in each of "
                f"the train / val / test regions, split {'/'.join(f'{f:g}' for f in fractions)}). Use a longer "
                "text, a shorter context (task.context=...) or larger val/test split_fractions."
            )
        train, val, _ = region_sizes(n, fractions)
        # [begin, end) of each split in the stream; a window of context + 1 bytes lies inside one.
        self.regions: dict[str, tuple[Tensor, int, int]] = {
            "train": (self.stream, 0, train),
            "val": (self.stream, train, train + val),
            "test": (self.stream, train + val, n),
        }
        if ood_path:
            ood = as_stream(read_bytes(ood_path, encoding))
            if ood.numel() < self.context + 1:
                raise ValueError(
                    f"TextTask: ood_path '{ood_path}' holds {ood.numel()} bytes; the ood split needs at least "
                    f"context + 1 = {self.context + 1}. Use a longer text or a shorter context (task.context=...)."
                )
            self.regions["ood"] = (ood, 0, ood.numel())

    # -- Task ---------------------------------------------------------------------------------
    def dims(self) -> dict[str, int]:
        return {"vocab_size": VOCAB_SIZE, "context": self.context}

    def generate(self, n: int, difficulty: float | Tensor, generator: torch.Generator) -> Problem:
        """`n` random training windows (n * context instances); `difficulty` is ignored (see module)."""
        return self.windows_from("train", n, generator)

    def windows_from(self, split: str, n: int, generator: torch.Generator) -> Problem:
        """`n` windows at seeded random starts inside the region of `split`."""
        if split not in self.regions:
            raise ValueError(f"Unknown split '{split}' for task 'text'. Valid splits: {', '.join(self.regions)}.")
        if int(n) < 1:
            raise ValueError(f"the number of windows must be >= 1, got {n}.")
        stream, begin, end = self.regions[split]
        starts = begin + torch.randint(0, end - begin - self.context, (int(n),), generator=generator)
        inputs, targets = windows(stream, starts, self.context)
        positions = torch.arange(1, self.context + 1, dtype=torch.float32).repeat(int(n))
        return Problem(
            x=TokenWindows(inputs),
            target=targets.reshape(-1),
            difficulty=positions,
            num_instances=inputs.numel(),
            info={"starts": starts},
        )

    def split_levels(self) -> dict[str, float | None]:
        return {name: None for name in self.regions}

    def eval_batches(self, problem: Problem, batch_size: int) -> Iterator[Problem]:
        """Whole windows, about `batch_size` predicted tokens per batch (at least one window)."""
        tokens = problem.x.tokens
        per = max(1, int(batch_size) // self.context)
        t = self.context
        for lo in range(0, tokens.shape[0], per):
            hi = min(lo + per, tokens.shape[0])
            yield Problem(
                x=TokenWindows(tokens[lo:hi]),
                target=problem.target[lo * t : hi * t],
                difficulty=None if problem.difficulty is None else problem.difficulty[lo * t : hi * t],
                num_instances=(hi - lo) * t,
                info={k: v[lo:hi] for k, v in problem.info.items()},
            )

    def split(self, name: str) -> Problem:
        """Fixed seeded windows of a region: `val_size` windows for val, `test_size` for the rest."""
        if name not in self.regions:
            raise ValueError(f"Unknown split '{name}' for task 'text'. Valid splits: {', '.join(self.regions)}.")
        if name not in self._split_cache:
            size = self.val_size if name == "val" else self.test_size
            self._split_cache[name] = self.windows_from(name, size, split_generator(self.split_seed, name))
        return self._split_cache[name]

    def answer_shape(self, problem: Problem) -> tuple[int, ...]:
        return (problem.num_instances, VOCAB_SIZE)

    def check(self, problem: Problem, y: Tensor, tol: float = 1e-4) -> Tensor:
        """Is the most likely byte the next one? (`tol` has no meaning for discrete answers.)"""
        return y.argmax(dim=-1) == problem.target

    def metrics(self, problem: Problem, y: Tensor) -> dict[str, Tensor]:
        ce = self.loss(problem, y.detach())
        return {"ce": ce, "bits_per_byte": ce / math.log(2), "accuracy": self.check(problem, y.detach()).float()}

    def prompt_problem(self, ids: Tensor) -> Problem:
        """The last `context` ids of a prompt as one window, one instance per position, no target
        (irem-generate predicts the row of the last position)."""
        window = torch.as_tensor(ids, dtype=torch.long).flatten()[-self.context :]
        if window.numel() == 0:
            raise ValueError("TextTask.prompt_problem: the prompt is empty; give at least one byte.")
        return Problem(x=TokenWindows(window[None]), target=None, num_instances=window.numel())

    # -- replay: whole windows, small ----------------------------------------------------------
    def replay_items(self, problem: Problem, y: Tensor) -> dict[str, Tensor] | None:
        """One replay unit per window: its ids and targets as bytes and its candidate logits in
        float16, about context * 512 bytes a window (32 KB at context 64; the buffer's capacity
        counts windows)."""
        tokens = problem.x.tokens
        n, t = tokens.shape
        return {
            "tokens": tokens.to(torch.uint8),
            "target": problem.target.view(n, t).to(torch.uint8),
            "y": y.detach().view(n, t, VOCAB_SIZE).to(torch.float16),
        }

    def from_replay(self, items: dict[str, Tensor]) -> tuple[Problem, Tensor]:
        tokens = items["tokens"].long()
        n, t = tokens.shape
        problem = Problem(
            x=TokenWindows(tokens),
            target=items["target"].long().reshape(-1),
            difficulty=torch.arange(1, t + 1, dtype=torch.float32, device=tokens.device).repeat(n),
            num_instances=n * t,
        )
        return problem, items["y"].float().reshape(n * t, VOCAB_SIZE)
