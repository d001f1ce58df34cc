"""benchmarks/throughput.py runs end to end at tiny sizes and ends on its key=value line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.mark.slow  # a fresh interpreter importing torch and Hydra: ~10-25 s on the 2-core machine
def test_throughput_prints_a_fraction_for_one_family(tmp_path: Path) -> None:
    args = ["--families", "mlp", "--batch", "8", "--override", "energy.width=64", "--seconds", "0.2"]
    args += ["--rounds", "1", "--warmup", "1", "--large", "128", "--no-inference"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    pairs = dict(item.split("=", 1) for item in last.split())
    assert 0 < float(pairs["mlp_fraction_1t"]) < 2, last
    assert float(pairs["mlp_ms_1t"]) > 0
