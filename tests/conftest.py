"""Shared fixtures: one torch thread, a scratch output folder, and cached Hydra composition.

The tests are parametrized over the files in configs/ (task/, energy/, solver/, experiment/), so a
new task, energy or solver gets the shared tests without touching this folder. The test folders
have no __init__.py on purpose: `tests/tasks` as a package would shadow the `tasks` library.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from irem.cli import CONFIG_DIR  # also registers the config schemas

_composed: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def config_names(group: str) -> list[str]:
    """Every choice of a config group, found by glob so a new file is tested for free."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def compose_config(config_name: str = "train", overrides: tuple[str, ...] | list[str] = ()) -> DictConfig:
    """`hydra.compose` with the project's config dir; cached, and a fresh copy every call."""
    key = (config_name, tuple(overrides))
    if key not in _composed:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            _composed[key] = compose(config_name, overrides=list(overrides))
    return copy.deepcopy(_composed[key])


GROUP_ARGS = {"task_name": "task", "energy_name": "energy", "solver_name": "solver", "experiment_name": "experiment"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for `task_name` (energy_name, solver_name, experiment_name) runs once per config file."""
    for arg, group in GROUP_ARGS.items():
        if arg in metafunc.fixturenames:
            names = config_names(group)
            assert names, f"no configs found in {CONFIG_DIR}/{group}"
            metafunc.parametrize(arg, names)


@pytest.fixture(name="compose_config", scope="session")
def _compose_config_fixture():
    return compose_config


@pytest.fixture(name="config_names", scope="session")
def _config_names_fixture():
    return config_names


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine has two cores shared with other workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_torch_rng():
    """Trainer.restore sets the global RNG; keep that from leaking between tests."""
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """A fresh output folder for a run."""
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
