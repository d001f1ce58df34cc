"""irem/openmp.py: the wait policy is set before torch loads and never overrides the user's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from irem.openmp import configure_wait_policy

SNIPPET = (
    "import os; from irem.openmp import configure_wait_policy; configure_wait_policy({policy!r}); "
    "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
)


def run(policy: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(policy=policy)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_default_is_a_short_bounded_spin() -> None:
    assert run("short-spin") == "None 30000"
    assert run("passive") == "PASSIVE None"
    assert run("inherit") == "None None"


def test_the_users_environment_wins() -> None:
    assert run("short-spin", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None"
    assert run("passive", GOMP_SPINCOUNT="5") == "None 5"


def test_bad_policy_is_an_error_and_a_late_call_changes_nothing() -> None:
    with pytest.raises(ValueError, match="Valid choices: short-spin, passive, inherit"):
        configure_wait_policy("spin")
    before = dict(os.environ)
    assert "torch" in sys.modules  # conftest imported it
    assert configure_wait_policy("passive") is False
    assert dict(os.environ) == before
