"""A task in a pip-installed package of its own, found by the commands through Hydra's plug-in
conventions (issue 32, item 11): the package ships its configs and a `SearchPathPlugin` in the
`hydra_plugins` namespace package, which puts those configs on every irem command's search path.
Nothing in irem is edited, and neither `hydra.searchpath` nor `PYTHONPATH` is set.

The test writes the package the README describes into a temporary folder, installs it into this
environment (no build isolation, so no download), trains and evaluates one iteration of its task by
name with the installed irem-train (which evaluates what it trained), and uninstalls it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from commands import finish, start

PACKAGE = "irem-negate-task"  # the distribution's name, for pip uninstall
FILES = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "irem-negate-task"
        version = "0.1.0"
        dependencies = ["irem"]

        [tool.setuptools]
        packages = ["negate_task", "negate_task.configs", "negate_task.configs.task", "hydra_plugins.negate_task"]

        [tool.setuptools.package-data]
        "negate_task.configs.task" = ["*.yaml"]
        """,
    "negate_task/__init__.py": "",
    "negate_task/negate.py": '''
        """y = -x: a task in a package of its own."""

        import torch

        from irem.problem import Problem
        from irem.task import Task, per_instance_level


        class Negate(Task):
            name = "negate"

            def __init__(self, n: int = 4, difficulty: float = 1.0, harder_difficulty: float = 2.0, **split_args):
                self.n = n
                super().__init__(difficulty, harder_difficulty, **split_args)

            def dims(self):
                return {"x_dim": self.n, "y_dim": self.n}

            def generate(self, count, difficulty, generator):
                s = per_instance_level(difficulty, count)
                x = (torch.rand(count, self.n, generator=generator) * 2 - 1) * s.view(-1, 1)
                return Problem(x=x, target=-x, difficulty=s)

            def check(self, problem, y, tol=1e-4):
                return (y + problem.x).abs().amax(dim=1) <= tol
        ''',
    "negate_task/configs/__init__.py": "",
    "negate_task/configs/task/__init__.py": "",
    "negate_task/configs/task/negate.yaml": """
        _target_: negate_task.negate.Negate
        n: 4
        test_size: 16
        val_size: 8
        """,
    # Hydra imports every module under the hydra_plugins namespace package (no __init__.py in it)
    # and calls each SearchPathPlugin it finds: this one adds the package's configs.
    "hydra_plugins/negate_task/__init__.py": "",
    "hydra_plugins/negate_task/searchpath.py": """
        from hydra.core.config_search_path import ConfigSearchPath
        from hydra.plugins.search_path_plugin import SearchPathPlugin


        class NegateTaskSearchPath(SearchPathPlugin):
            def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
                search_path.append(provider="negate-task", path="pkg://negate_task.configs")
        """,
}


def pip(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=240)


@pytest.fixture
def installed(tmp_path: Path):
    """The package, written into tmp_path/src and pip-installed (not editable) for the test only."""
    src = tmp_path / "src"
    for name, text in FILES.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    done = pip("install", "--quiet", "--no-deps", "--no-build-isolation", str(src))
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        yield
    finally:
        pip("uninstall", "--quiet", "--yes", PACKAGE)


def test_a_task_in_its_own_package_trains_and_evaluates_by_name(installed, tmp_path: Path) -> None:
    cwd = tmp_path / "work"  # not the package's folder: the commands find it installed, not in the cwd
    cwd.mkdir()
    run_dir = cwd / "outputs" / "negate-energy"
    args = ["task=negate", "energy.width=16", "trainer.iterations=1", "trainer.batch_size=8", "trainer.progress=false"]
    train = finish(start("irem-train", [*args, "eval.budgets=[1]", "eval.splits=[test]", "threads=1"], cwd))
    assert train.returncode == 0, train.stderr[-3000:]
    assert "negate-energy: task=negate model=EnergyModel" in train.stdout and str(run_dir) in train.stdout
    assert "trained 1 iterations" in train.stdout  # then evaluated, as irem-train does:
    assert "mse" in train.stdout and (run_dir / "eval.json").is_file()


def test_the_readme_shows_this_plug_in() -> None:
    """The README's search-path plug-in is the one this test installs, word for word."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## A plug-in in its own package") :]
    block = section[section.index("```python\n") + len("```python\n") :]
    assert block[: block.index("```")] == textwrap.dedent(FILES["hydra_plugins/negate_task/searchpath.py"]).lstrip()
