"""How OpenMP threads wait between operations: set once, before torch is imported.

A descent step is a few hundred small operations, and between two of them torch's OpenMP
threads either spin (burn a core, wake at once) or sleep (free the core, pay a wake-up). On this
project's 2-core reference machine, one IREM training iteration on inverse (benchmarks/train_step.py,
2 threads) measured:

    policy                                  idle machine    2 busy processes beside it
    spin (libgomp default, 300k spins)      ~119 ms         471 ms (up to 10x at load ~6)
    sleep at once (OMP_WAIT_POLICY=PASSIVE) 137 ms          225 ms
    short spin (GOMP_SPINCOUNT=30000)       116 ms          246 ms

The short spin keeps nearly all of the idle speed and stays within ~10% of PASSIVE under load,
so it is the default here. Anything the user exported (OMP_WAIT_POLICY or GOMP_SPINCOUNT) wins.
GOMP_SPINCOUNT is read by GNU libgomp, which Linux torch wheels use; other runtimes ignore it.
"""

from __future__ import annotations

import os
import sys

SHORT_SPIN = "30000"


def configure_wait_policy(policy: str = "short-spin") -> bool:
    """`short-spin` (default), `passive`, or `inherit` (leave the environment alone).

    Returns whether it changed the environment. Once torch is imported OpenMP has read its
    settings, so a late call (irem.cli imported from a program that loaded torch first) changes
    nothing rather than leave the environment describing a policy that is not in effect.
    """
    if policy not in ("short-spin", "passive", "inherit"):
        raise ValueError(f"Unknown OpenMP wait policy '{policy}'. Valid choices: short-spin, passive, inherit.")
    if policy == "inherit" or "torch" in sys.modules:
        return False
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    if policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN
    return True


def describe_wait_policy() -> str:
    return (
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '(unset: 300000 spins)')}"
    )
