"""`GET /verify`: the page the verification mail links to (`<public URL>/verify#token=…`,
services/accounts.py `verification_link`).

Opening the page verifies nothing. Mail scanners and link previews fetch links from mail on their own,
so the page only shows a button; pressing it posts the token to `POST /api/auth/verify` (beside the page:
a relative URL, so a public URL with a path prefix works too) and shows the answer. The token travels in
the link's fragment, which a browser never sends to a server: no access log, proxy or `Referer` header
holds it, and the page takes it out of the address bar and history as soon as it has read it.

Once verified, the page offers a link to the dashboard's login (`./#/login`, beside the page: api/dashboard/).

One self-contained page, no external resource; its script and style are allowed by their hashes, and
nothing from the request is ever written into it (the text it shows is set with `textContent`).
"""

from __future__ import annotations

import base64
import hashlib

from robyn import Request, Response, Robyn

from dragonfly.api.http import request_id
from dragonfly.services.accounts import VERIFY_PAGE_PATH

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1d2327; margin: 0 auto; max-width: 34rem;
       padding: 3rem 1.5rem; }
h1 { font-size: 1.4rem; }
button { font: inherit; padding: .5rem 1.1rem; border-radius: 4px; border: 1px solid #2a4f9b;
         background: #2a4f9b; color: #fff; cursor: pointer; }
button:disabled { opacity: .55; cursor: default; }
a.button { display: inline-block; padding: .5rem 1.1rem; border-radius: 4px; background: #2a4f9b; color: #fff;
           text-decoration: none; }
a[hidden] { display: none; }
.done { color: #1a6b2f; } .failed { color: #a11a1a; }
"""

_SCRIPT = """
"use strict";
(() => {
  const status = document.getElementById("status");
  const button = document.getElementById("confirm");
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  // Out of the address bar and the history: the token is good for one verification.
  history.replaceState(null, "", location.pathname + location.search);
  const show = (text, cls) => { status.textContent = text; status.className = cls || ""; };
  if (!token) {
    show("This link holds no verification token. Open the link from the mail again, or send the "
      + "token from the mail to POST /api/auth/verify.", "failed");
    return;
  }
  show("Press the button to confirm the email address of your Dragonfly account.");
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    show("Confirming\\u2026");
    let answer;
    try {
      answer = await fetch("api/auth/verify", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (err) {
      show("The server could not be reached. Try again.", "failed");
      button.disabled = false;
      return;
    }
    if (answer.ok) {
      button.hidden = true;
      show("Your email address is verified: your account is confirmed. Log in to start.", "done");
      document.getElementById("login").hidden = false;
      return;
    }
    let message = "HTTP " + answer.status;
    try {
      const body = await answer.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (err) { /* not JSON: keep the status */ }
    show("Not confirmed: " + message, "failed");
    button.disabled = answer.status < 500;  // a used or expired token stays refused; retry the rest
  });
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


VERIFY_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Confirm your email address - Dragonfly</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Confirm your email address</h1>
<p id="status">Loading&hellip;</p>
<p><button id="confirm" type="button" hidden>Confirm my email address</button></p>
<p><a id="login" class="button" href="./#/login" hidden>Log in</a></p>
<noscript><p>This page needs JavaScript. Without it, send the token from the mail to
<code>POST /api/auth/verify</code> as <code>{{"token": "&hellip;"}}</code>.</p></noscript>
<script>{_SCRIPT}</script>
</body>
</html>
"""

# Only this page's own script and style run; it may talk to its own origin and nothing else.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)};"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def add_route(app: Robyn) -> None:
    """Serve the page at `/verify`, public (it holds no data; the token never reaches this handler)."""

    async def verify_page(request: Request) -> Response:
        headers = {
            "content-type": "text/html; charset=utf-8",
            "x-request-id": request_id(request.headers),
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "content-security-policy": CONTENT_SECURITY_POLICY,
        }
        return Response(200, headers, VERIFY_HTML)

    app.add_route("GET", VERIFY_PAGE_PATH, verify_page)


__all__ = ["CONTENT_SECURITY_POLICY", "VERIFY_HTML", "VERIFY_PAGE_PATH", "add_route"]
