"""tests/support/ports.py: the ports tests choose never meet one the kernel hands out, nor another
pytest-xdist worker's."""

from __future__ import annotations

import pytest
from support import ports


def test_each_worker_has_its_own_slice_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(ports._worker_slice())
    assert slices[0][1] <= slices[1][0] and slices[1][1] <= slices[2][0]
    assert slices[0][0] >= 1024 and slices[2][1] <= ephemeral_low


def test_free_port_hands_out_bindable_ports_in_turn() -> None:
    lo, hi = ports._worker_slice()
    picked = [ports.free_port() for _ in range(20)]
    assert len(set(picked)) == 20 and all(lo <= p < hi for p in picked)
