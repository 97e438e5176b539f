"""The dashboard: `GET /` serves its page, `GET /dashboard/<file>` its ES modules, style sheet and icon.

The files are hand-written and live in `static/` beside this module (shipped in the package: maturin
takes every file under `python/dragonfly/` that git does not ignore); nothing is fetched from another
origin, so the dashboard works offline. They are read once when the app is built and served from memory,
each with a strong ETag (a repeat visit is a 304).

The page talks only to the documented API, relative to its own address (`api/…`, `v1/…`), so a public
URL with a path prefix works as is; the control plane serves it and the data plane passes it through
like any path outside `/v1/`. Every answer carries a Content-Security-Policy that admits scripts and
styles from this origin only (no inline script, no `eval`), forbids framing, and limits connections to
this origin; `nosniff` and `no-referrer` too. The session is an HttpOnly cookie (api/session_cookies.py);
a raw buyer key the page shows or uses stays in the script's memory, never in storage or a URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from robyn import Request, Response, Robyn

from dragonfly.api.http import request_id

DASHBOARD_PATH = "/"
ASSET_PREFIX = "/dashboard/"
INDEX = "index.html"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Traversable]:
    out: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out.update(_walk(entry, f"{prefix}{entry.name}/"))
        elif any(entry.name.endswith(ext) for ext in _TYPES):
            out[prefix + entry.name] = entry
    return out


def load_assets() -> dict[str, Asset]:
    """URL path -> file: `/` is the page, every other file is under `/dashboard/`."""
    folder = resources.files("dragonfly.api.dashboard") / "static"
    assets: dict[str, Asset] = {}
    for name, entry in sorted(_walk(folder, "").items()):
        body = entry.read_bytes()
        kind = next(t for ext, t in _TYPES.items() if name.endswith(ext))
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        path = DASHBOARD_PATH if name == INDEX else ASSET_PREFIX + name
        assets[path] = Asset(body=body, content_type=kind, etag=etag)
    if DASHBOARD_PATH not in assets:
        raise RuntimeError("the dashboard's index.html is missing from the package")
    return assets


def security_headers(content_type: str, rid: str) -> dict[str, str]:
    return {
        "content-type": content_type,
        "x-request-id": rid,
        "cache-control": "no-cache",
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
    }


def add_routes(app: Robyn) -> None:
    """Serve the page and its files, public (they hold no data and no secret: all data comes from the
    API, with the caller's own credentials)."""
    for path, asset in load_assets().items():
        app.add_route("GET", path, _serve(asset))


def _serve(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        headers = security_headers(asset.content_type, request_id(request.headers))
        headers["etag"] = asset.etag
        if request.headers.get("if-none-match") == asset.etag:
            return Response(304, headers, b"")
        return Response(200, headers, asset.body)

    return serve


__all__ = ["ASSET_PREFIX", "CONTENT_SECURITY_POLICY", "DASHBOARD_PATH", "add_routes", "load_assets"]
