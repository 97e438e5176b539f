"""Secrets in what the processes a test started wrote: "no secret ever in the logs", checked over every
process log of a test session (the `pytest_sessionfinish` hook in tests/conftest.py).

What counts as a secret (case-insensitive names, any surrounding JSON or repr quoting):

  api key        `sk-df-` and 20 or more url-safe characters: a whole Dragonfly key (43 characters after the
                 prefix) or a part long enough to identify one. The hint form `sk-df-ab12...yz89` has a
                 `...` after 4 characters and is allowed.
  authorization  an echoed `Authorization` header value: `Authorization: Bearer <token>`,
                 `"authorization": "<value>"`, `(b'authorization', b'<value>')`.
  bearer token   `Bearer <token>` anywhere else, with a token of 16 or more characters (prose such as
                 "a Bearer token" is not one).
  password       `password=<value>` or `"password": "<value>"` (also passwd).
  url password   credentials in a URL: `scheme://user:<password>@host`.

A value that is visibly not one is allowed: empty, `null`/`None`, masked (`***`, `[secure]`,
`<redacted>`, `...`), or a placeholder such as `<key>` or `$TOKEN`. And the one line `dragonfly serve
--demo` prints on purpose, `Demo buyer key: sk-df-…` (python/dragonfly/cli/serve.py): the Quick Start's
key, shown to whoever started the server.

Nothing here ever returns a secret whole: every excerpt has each match cut to at most 10 characters
of its value (and never more than a third of it) followed by "…".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# `serve --demo`'s banner, exactly: the whole line and nothing else on it.
DEMO_BANNER = re.compile(r"Demo buyer key: sk-df-[A-Za-z0-9_-]{43}\s*")

_Q = r"""\\?["']"""  # a quote, maybe escaped (JSON inside a JSON string)
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("api key", re.compile(r"(?P<value>sk-df-[A-Za-z0-9_-]{20,})")),
    (
        "authorization",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9-])(?:proxy-)?authorization(?:{_Q})?\s*[:=,]\s*(?:b?{_Q})?\s*"
            r"(?:(?P<scheme>bearer|basic|token|digest)\s+)?(?P<value>[^\s'\"\\,;]+)"
        ),
    ),
    ("bearer token", re.compile(r"(?i)(?<![A-Za-z0-9_-])bearer\s+(?P<value>[A-Za-z0-9._~+/-]{16,}=*)")),
    (
        "password",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:password|passwd)\b(?:"
            rf"(?:{_Q})\s*:\s*(?:{_Q})(?P<quoted>[^'\"\\]+)"  # "password": "value"
            rf"|\s*=\s*(?:{_Q})?(?P<value>[^\s&,;'\"\\)}}\]]+)"  # password=value, password="value"
            r")"
        ),
    ),
    ("url password", re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:(?P<value>[^\s/@'\"]+)@")),
)

# Masked (`***`, `[secure]`), a placeholder (`<key>`, `$TOKEN`, `${TOKEN}`, `{token}`, `%s`), or nothing.
_MASKED = re.compile(
    r"[*•x.\-_#]+|\[[^\]]*\]|<[^>]*>?|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{[^}]*\}?|%s|none|null"
)

EXCERPT_CHARS = 160


@dataclass(frozen=True)
class Finding:
    line_no: int  # 1-based
    kinds: tuple[str, ...]
    excerpt: str  # the line, redacted and truncated: safe to print

    def __str__(self) -> str:
        return f"line {self.line_no} [{', '.join(self.kinds)}]: {self.excerpt}"


def _placeholder(value: str) -> bool:
    """A value that is visibly no secret: empty, masked, or a placeholder."""
    v = value.strip().strip("'\"`")
    if not v:
        return True
    return _MASKED.fullmatch(v.lower()) is not None


def redact(secret: str) -> str:
    """At most 10 characters, and at most a third, of `secret`, then "…"."""
    return secret[: min(10, len(secret) // 3)] + "…"


def _spans(line: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for kind, pattern in _RULES:
        for m in pattern.finditer(line):
            group = "quoted" if m.groupdict().get("quoted") is not None else "value"
            value = m.group(group)
            if value is None or _placeholder(value):
                continue
            if kind == "authorization" and m.group("scheme") is None and len(value) < 16:
                continue  # "authorization: missing": words, not a credential
            found.append((m.start(group), m.end(group), kind))
    return found


def _excerpt(line: str, spans: list[tuple[int, int, str]]) -> str:
    # Redact every matched value (overlapping ones merged), then cut to EXCERPT_CHARS around the first.
    merged: list[list[int]] = []
    for start, end, _ in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    pos, first = 0, -1
    for start, end in merged:
        out.append(line[pos:start])
        if first < 0:
            first = sum(len(p) for p in out)
        out.append(redact(line[start:end]))
        pos = end
    out.append(line[pos:])
    text = "".join(out)
    if len(text) <= EXCERPT_CHARS:
        return text
    begin = max(0, first - EXCERPT_CHARS // 3)
    cut = text[begin : begin + EXCERPT_CHARS]
    return ("…" if begin else "") + cut + ("…" if begin + EXCERPT_CHARS < len(text) else "")


def scan_text(text: str) -> list[Finding]:
    findings: list[Finding] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if DEMO_BANNER.fullmatch(line.strip()):
            continue
        spans = _spans(line)
        if spans:
            kinds = tuple(dict.fromkeys(kind for _, _, kind in sorted(spans)))
            findings.append(Finding(no, kinds, _excerpt(line, spans)))
    return findings


def find_secrets(text: str) -> list[str]:
    """The lines of `text` that carry a secret, each redacted and truncated (safe to print), with its
    line number and what was found: `line 12 [api key]: {"msg": "sk-df-ab12…"}`."""
    return [str(f) for f in scan_text(text)]


def scan_files(paths: Iterable[Path]) -> tuple[int, dict[Path, list[Finding]]]:
    """Scan every file of `paths` that still exists: (how many were scanned, findings per file)."""
    scanned = 0
    found: dict[Path, list[Finding]] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed with its test's directory (a throwaway service's, say)
        scanned += 1
        findings = scan_text(text)
        if findings:
            found[path] = findings
    return scanned, found


def format_report(found: dict[Path, list[Finding]]) -> str:
    lines = []
    for path, findings in found.items():
        lines.append(str(path))
        lines.extend(f"  {f}" for f in findings)
    return "\n".join(lines)
