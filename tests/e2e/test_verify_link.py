"""The verification mail's link works through `dragonfly serve`'s public port.

It names the public address (the control plane behind `serve` listens on an internal port of its own),
carries the token in the fragment (never sent to a server), opens a page that verifies nothing by being
fetched (mail scanners fetch links), and the page's own script, run against the server, completes the
verification. The script runs under node with the few DOM calls it makes provided (no browser here)."""

from __future__ import annotations

import base64
import email
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests
from support.market import login, market_settings, start_serve
from support.processes import ProcessGroup

PASSWORD = "correct horse battery"
_TOKEN_LINE = re.compile(r"^([A-Za-z0-9_-]{40,})$", re.M)

# What a browser gives the page's script: the elements it looks up (as the page's HTML makes them), its
# location and history, and fetch resolving a relative URL against the page's address.
_HARNESS = r"""
"use strict";
const fs = require("fs");
const vm = require("vm");
const [scriptPath, pageUrl, press] = process.argv.slice(2);
const page = new URL(pageUrl);
const elements = {};
const element = (id) => elements[id] || (elements[id] = {
  id, textContent: "", className: "", hidden: id === "confirm", disabled: false, listeners: {},
  addEventListener(type, fn) { this.listeners[type] = fn; },
});
const seen = { replaced: null, fetched: [] };
const context = {
  document: { getElementById: element },
  location: { hash: page.hash, pathname: page.pathname, search: page.search },
  history: { replaceState: (_state, _title, to) => { seen.replaced = to; } },
  URLSearchParams,
  JSON,
  fetch: (target, init) => {
    const url = new URL(target, page);
    seen.fetched.push({ url: url.href, method: init.method, body: init.body });
    return fetch(url, init);
  },
};
vm.runInNewContext(fs.readFileSync(scriptPath, "utf8"), context);
(async () => {
  const button = element("confirm");
  if (press === "press" && !button.hidden) await button.listeners.click();
  const status = element("status");
  console.log(JSON.stringify({
    status: status.textContent, cls: status.className, hidden: button.hidden, disabled: button.disabled,
    replaced: seen.replaced, fetched: seen.fetched,
  }));
})();
"""


def _mail_to(mail_dir: Path, address: str) -> str:
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        if msg["To"] == address:
            body = msg.get_payload(decode=True)
            assert isinstance(body, bytes)
            return body.decode()
    raise AssertionError(f"no mail to {address} in {mail_dir}")


def _signup(origin: str, address: str, mail_dir: Path) -> tuple[str, str]:
    """Sign up through the public port; returns the mailed link and token."""
    resp = requests.post(
        f"{origin}/api/auth/signup", json={"email": address, "password": PASSWORD}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    text = _mail_to(mail_dir, address)
    (token,) = _TOKEN_LINE.findall(text)
    (link,) = re.findall(r"https?://\S+/verify\S*", text)
    return link, token


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _run_page(tmp_path: Path, html: str, page_url: str, *, press: bool) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed to run the page's script"
    match = re.search(r"<script>(.*?)</script>", html, re.S)
    assert match
    script, harness = tmp_path / "page.js", tmp_path / "harness.js"
    script.write_text(match.group(1), encoding="utf-8")
    harness.write_text(_HARNESS, encoding="utf-8")
    done = subprocess.run(
        [node, str(harness), str(script), page_url, "press" if press else "look"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_mailed_link_opens_a_page_whose_button_verifies(tmp_path: Path, processes: ProcessGroup) -> None:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    origin = start_serve(processes, settings)
    address = "vera@example.com"
    link, token = _signup(origin, address, Path(settings.mail_dir))
    # The public port `serve` listens on, not the control plane's; the token only in the fragment.
    assert link == f"{origin}/verify#token={token}"

    # What a browser (or a mail scanner) requests: the fragment stays behind.
    page = requests.get(link.split("#", 1)[0], timeout=30)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers.get("x-request-id")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "form-action 'none'" in csp
    # The CSP admits exactly the page's own script and style (a browser would block them otherwise).
    script = re.search(r"<script>(.*?)</script>", page.text, re.S)
    style = re.search(r"<style>(.*?)</style>", page.text, re.S)
    assert script and style
    assert (
        f"script-src {_csp_hash(script.group(1))};" in csp
        and f"style-src {_csp_hash(style.group(1))};" in csp
    )
    assert token not in page.text

    session = login(origin, address, PASSWORD)
    me = requests.get(f"{origin}/api/auth/me", headers=session, timeout=30).json()
    assert me["email_verified"] is False  # fetching the page verified nothing

    # Opened, not pressed: the token leaves the address bar, nothing is sent.
    looked = _run_page(tmp_path, page.text, link, press=False)
    assert looked["replaced"] == "/verify" and looked["fetched"] == [] and looked["hidden"] is False
    assert (
        requests.get(f"{origin}/api/auth/me", headers=session, timeout=30).json()["email_verified"] is False
    )

    pressed = _run_page(tmp_path, page.text, link, press=True)
    assert pressed["fetched"] == [
        {
            "url": f"{origin}/api/auth/verify",
            "method": "POST",
            "body": json.dumps({"token": token}, separators=(",", ":")),
        }
    ]
    assert pressed["cls"] == "done" and "confirmed" in pressed["status"] and pressed["hidden"] is True
    me = requests.get(f"{origin}/api/auth/me", headers=session, timeout=30).json()
    assert me["email_verified"] is True
    balance = requests.get(f"{origin}/api/billing/balance", headers=session, timeout=30).json()
    assert balance["balance_usd"] == "0.100000"  # the trial credit came with it

    # The link again: the token is used up, and the page says so (the server's message).
    again = _run_page(tmp_path, page.text, link, press=True)
    assert again["cls"] == "failed" and "already used" in again["status"] and again["disabled"] is True
    # A link without a token: nothing to press.
    bare = _run_page(tmp_path, page.text, f"{origin}/verify", press=True)
    assert bare["fetched"] == [] and bare["hidden"] is True and "no verification token" in bare["status"]


def test_the_link_names_the_configured_public_url(tmp_path: Path, processes: ProcessGroup) -> None:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    origin = start_serve(
        processes, settings, extra_env={"DRAGONFLY_PUBLIC_URL": "https://dragonfly.example.com/gateway/"}
    )
    link, token = _signup(origin, "pat@example.com", Path(settings.mail_dir))
    assert link == f"https://dragonfly.example.com/gateway/verify#token={token}"
