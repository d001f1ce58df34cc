"""The wheel: everything under the one name `irem`, configs included, so an installed copy runs.

The repository keeps tasks/, energies/, solvers/, baselines/ and configs/ at its top level; the
wheel must install them as irem.tasks, ... (a top-level `tasks` would collide with a user's own
module) and carry every config file (without them irem-train cannot compose a config).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(out: Path) -> Path:
    """Built from a copy of the source, so setuptools' build/ folder never lands in the checkout."""
    source = out / "source"
    skip = shutil.ignore_patterns(".git", ".venv*", "build", "outputs", "multirun", "runs", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("irem-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_installs_one_top_level_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"irem"}, f"the wheel installs top-level names {sorted(tops)}"
    for package in ("tasks", "energies", "solvers", "baselines"):
        assert f"irem/{package}/__init__.py" in names


def test_the_wheel_carries_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
    assert configs
    missing = [c for c in configs if f"irem/configs/{c}" not in names]
    assert not missing, f"configs left out of the wheel (add their folder to pyproject's packages): {missing}"


@pytest.mark.slow
def test_an_installed_wheel_trains_from_another_directory(tmp_path: Path, wheel: Path) -> None:
    """A fresh venv with torch and the wheel only (no checkout on the path) runs irem-train."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, str(wheel)], check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [
            str(venv / "bin" / "irem-train"),
            "trainer.iterations=20",
            "trainer.progress=false",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "inverse-energy" in run.stdout
    gone = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tasks"], capture_output=True, cwd=tmp_path, env=env
    )
    assert gone.returncode != 0


def test_the_dev_extra_leaves_the_hugging_face_stack_optional() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(d.startswith("datasets") for d in extras["dev"])
    assert any(d.startswith("datasets") for d in extras["hf"])


def test_built_distributions_are_not_tracked() -> None:
    """`python -m build` writes dist/; git should not offer it for a commit."""
    ignored = subprocess.run(["git", "check-ignore", "-q", "dist/irem-0.1.0.tar.gz"], cwd=ROOT, capture_output=True)
    assert ignored.returncode == 0, ".gitignore does not ignore dist/"
