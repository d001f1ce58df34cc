"""Every random stream's seed, in one place: the fixed splits, training, evaluation and studies.

Each stream has its own generator, derived from the run's seed and what the stream is for, so no
stream can draw another's numbers: a training run never draws a test split, evaluation starts are
never the first training batch, and a study's level does not depend on which other levels it has.
Keys go through crc32, not hash(), so a stream is the same in every process. These formulas define
the data and the results of every run: changing one changes them.
"""

from __future__ import annotations

import zlib

import torch

RANK_SEED_STRIDE = 1_000_003  # training process r draws from seed + r * stride; rank 0 is the one-process run


def split_generator(split_seed: int, name: str) -> torch.Generator:
    """A task's fixed split `name`, seeded from the task's `split_seed` and the name."""
    return torch.Generator().manual_seed(int(split_seed) * 1000 + zlib.crc32(name.encode()) % 1000)


def training_generator(seed: int, rank: int = 0) -> torch.Generator:
    """What a training process draws its batches, starts and noise from."""
    return torch.Generator().manual_seed(int(seed) + RANK_SEED_STRIDE * int(rank))


def eval_generator(seed: int, purpose: str) -> torch.Generator:
    """The descent starts when evaluating `purpose` (a split name). Never the trainer's stream, which
    is manual_seed(seed): with both at seed 0 the evaluation starts were exactly the first training
    batch's draws; keyed by purpose too, so each split gets its own stream."""
    return torch.Generator().manual_seed((zlib.crc32(f"irem-eval/{purpose}".encode()) << 20) + int(seed))


def set_generator(seed: int, name: str) -> torch.Generator:
    """A fresh set of a study or of eval.levels (a level's instances, its starts, its noise), keyed by
    the set's name and purpose, so a level's instances do not depend on the other levels."""
    return torch.Generator().manual_seed(10_000 * (int(seed) + 1) + zlib.crc32(name.encode()) % 10_000)
