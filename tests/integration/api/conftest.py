"""Fixtures for the control-plane tests: `api`, a running control plane on each storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from control_plane_support import ControlPlane, start_control_plane
from support.processes import ProcessGroup


@pytest.fixture
def api(database_url: str, tmp_path: Path, processes: ProcessGroup) -> Iterator[ControlPlane]:
    yield start_control_plane(processes, database_url, tmp_path / "data")
