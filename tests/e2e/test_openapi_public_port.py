"""The control plane's OpenAPI description and its reader are reachable on the public port: `dragonfly
serve`'s data plane passes `/api/*` through to the control plane (gateway/app.py `_control_owned`)."""

from __future__ import annotations

from pathlib import Path

import requests
from support.market import market_settings, start_serve
from support.processes import ProcessGroup

from dragonfly.api.openapi import build_document


def test_openapi_json_and_docs_through_the_public_port(tmp_path: Path, processes: ProcessGroup) -> None:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    origin = start_serve(processes, settings)

    doc = requests.get(f"{origin}/api/openapi.json", timeout=30)
    assert doc.status_code == 200, doc.text
    assert doc.headers["content-type"] == "application/json" and doc.headers.get("x-request-id")
    assert doc.json() == build_document()

    page = requests.get(f"{origin}/api/docs", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "openapi.json" in page.text
