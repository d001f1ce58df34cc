"""Running the installed console scripts (irem-train, irem-eval, irem-study) from tests.

The scripts start as separate processes, the way users run them, so several can run side by side
while a module-scoped fixture waits for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def start(script: str, args: list[str], cwd: Path) -> subprocess.Popen:
    exe = BIN / script
    assert exe.exists(), f"{exe} missing: pip install -e ."
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [str(exe), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
