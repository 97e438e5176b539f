"""`python/dragonfly/_native.pyi` matches the compiled module: a drifting stub fails the suite."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dragonfly

PACKAGE_ROOT = Path(dragonfly.__file__).resolve().parent.parent


def test_native_stub_passes_mypy_stubtest() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: cannot run mypy.stubtest on dragonfly._native")
    env = {**os.environ, "MYPYPATH": str(PACKAGE_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "dragonfly._native"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"stub drifted from the build:\n{proc.stdout}\n{proc.stderr}"
