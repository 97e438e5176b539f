"""The report's plots: `--png DIR` writes valid, non-trivial PNG files drawn from the report's data; the
report and its JSON carry the series they are drawn from; without matplotlib the error says how to
install it."""

from __future__ import annotations

import builtins
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dragonfly.cli import main
from dragonfly.simulate import SCENARIOS, load_scenario, run
from dragonfly.simulate.plots import INSTALL_HINT, PlotsUnavailable, plot_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_plots_are_written_and_valid(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(SCENARIOS / "seller_outage.toml"),
            "--time-scale",
            "0.2",
            "--png",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"simulate-seller_outage{suffix}.png" for suffix in ("", "-traffic", "-ttft", "-cost")
    )
    for name in names:
        width, height = _png_size(out / name)
        assert width > 400 and height > 300
        assert (out / name).stat().st_size > 15_000  # something was drawn, not an empty canvas
    data = json.loads((tmp_path / "r.json").read_text())
    # The JSON keeps what the plots draw: per-bucket series and the TTFT histograms.
    assert set(data["timeline"]["listings"]) == {"alpha", "beta", "gamma"}
    hist = data["ttft_histogram"]["bulk"]
    assert len(hist["edges_ms"]) == len(hist["counts"]) + 1
    assert sum(hist["counts"]) == data["profiles"]["bulk"]["completed"]


def test_the_ttft_histogram_counts_every_completed_request() -> None:
    report = run(load_scenario(SCENARIOS / "slow_seller.toml").scaled(0.1))
    for pid, profile in report.profiles.items():
        hist = report.ttft_histogram[pid]
        assert sum(hist["counts"]) == profile.completed
        edges = hist["edges_ms"]
        assert edges == sorted(edges)
        assert profile.ttft_ms_p50 is not None and edges[0] <= profile.ttft_ms_p50 <= edges[-1]


def test_a_report_with_several_models_draws_one_traffic_panel_each(tmp_path: Path) -> None:
    report = run(load_scenario(SCENARIOS / "normal_day.toml").scaled(0.02))
    paths = plot_report(report, tmp_path)
    assert all(p.stat().st_size > 15_000 for p in paths)
    _, one_model_height = _png_size(tmp_path / "simulate-normal_day-ttft.png")
    _, traffic_height = _png_size(tmp_path / "simulate-normal_day-traffic.png")
    assert traffic_height > one_model_height  # two models: two stacked panels


def test_missing_matplotlib_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.setattr("importlib.import_module", lambda name: no_matplotlib(name))
    report = run(load_scenario(SCENARIOS / "price_war.toml").scaled(0.02))
    with pytest.raises(PlotsUnavailable, match=r"pip install 'dragonfly\[bench\]'"):
        plot_report(report, tmp_path)
    assert "install matplotlib" in INSTALL_HINT
