"""The session-end log scan (tests/support/log_scan.py): what counts as a secret in a process log, what
does not (ids, hashes, key hints, the demo banner), and that its report never repeats a secret."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from support.log_scan import find_secrets, format_report, redact, scan_files, scan_text

from dragonfly.security.api_keys import generate_key, key_hint

KEY = generate_key()


def _request_line(**extra: object) -> str:
    """A request log line as the gateway writes it (the JSON formatter)."""
    return orjson.dumps(
        {
            "ts": "2026-01-01T00:00:00.000Z",
            "level": "INFO",
            "logger": "dragonfly.requests",
            "msg": "request",
            "request_id": str(uuid.uuid4()),
            "key_id": str(uuid.uuid4()),
            "model": "demo/echo-1",
            "status": "completed",
            "http_status": 200,
            **extra,
        }
    ).decode()


def test_a_full_key_is_found_wherever_it_is() -> None:
    text = "\n".join(
        [
            "Dragonfly is serving on http://127.0.0.1:8000/v1  (database: sqlite)",
            _request_line(note=f"used {KEY}"),
            f"Traceback: ValueError('{KEY}')",
            "stopped",
        ]
    )
    found = scan_text(text)
    assert [(f.line_no, f.kinds) for f in found] == [(2, ("api key",)), (3, ("api key",))]
    # A long part of a key identifies it too.
    assert find_secrets(f"prefix {KEY[:30]}")
    assert find_secrets(f"key={KEY}...")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"key {key_hint(KEY)} created", id="key hint"),
        pytest.param(_request_line(key_hint=key_hint(KEY)), id="key hint in json"),
        pytest.param(f"Demo buyer key: {KEY}", id="demo banner"),
        pytest.param(_request_line(), id="request line with uuids"),
        pytest.param(f"sha256 {hashlib.sha256(b'x').hexdigest()} id {uuid.uuid4().hex}", id="hex digests"),
        pytest.param(
            '{"level":"INFO","logger":"dragonfly.gateway.drain","msg":"draining: 0 request(s) in flight, '
            'deadline 25.0 s"}',
            id="drain line",
        ),
        pytest.param("[WARNING] Killing worker-1 after it refused to gracefully stop", id="granian"),
        pytest.param(
            '[INFO] 127.0.0.1:5555 - "POST /v1/chat/completions HTTP/1.1" 200 3.1', id="granian access log"
        ),
        pytest.param(
            '127.0.0.1 "POST /api/auth/login HTTP/1.1" 200 268 0.088 upstream=127.0.0.1:49023 '
            f"upstream_status=200 request_id={uuid.uuid4()}",
            id="nginx access log",
        ),
        pytest.param("Missing credentials: send `Authorization: Bearer <key or session token>`.", id="hint"),
        pytest.param("a Bearer token is required; www-authenticate: Bearer", id="prose"),
        pytest.param("Headers({'authorization': '[secure]'})", id="masked header"),
        pytest.param(
            '{"password": "", "password_hash": "abc"} password: must be 8 characters', id="no value"
        ),
        pytest.param("password=*** redis://127.0.0.1:6379/0 postgresql://df@127.0.0.1:5432/db", id="urls"),
    ],
)
def test_what_is_not_a_secret(line: str) -> None:
    assert find_secrets(line) == []


def test_the_demo_banner_is_allowed_only_as_itself() -> None:
    assert find_secrets(f"Demo buyer key: {KEY}") == []
    assert find_secrets(f"Demo buyer key: {KEY} Authorization: Bearer {KEY}")
    assert find_secrets(f'{{"msg": "Demo buyer key: {KEY}"}}')


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("Authorization: Bearer not-a-key", "authorization"),
        ("{'authorization': 'Bearer abcdefgh'}", "authorization"),
        ('{"headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}}', "authorization"),
        ("[(b'host', b'x'), (b'authorization', b'Bearer abcdefgh')]", "authorization"),
        ('"authorization": "sk-provider-abcdefghijklmnop"', "authorization"),
        ("curl -H 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig'", "bearer token"),
        ("login password=buyer-password-1 ok", "password"),
        ('password="hunter22"', "password"),
        ('{"email": "buyer@e2e.test", "password": "buyer-password-1"}', "password"),
        ('{"msg": "body {\\"password\\": \\"buyer-password-1\\"}"}', "password"),
        ("DRAGONFLY_DATABASE_URL=postgresql://dragonfly:s3cret-pw@db:5432/df", "url password"),
    ],
)
def test_bearer_authorization_and_password_forms_are_found(line: str, kind: str) -> None:
    (finding,) = scan_text(line)
    assert kind in finding.kinds


def test_the_report_never_contains_the_secret(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    password = "pw-" + secrets.token_urlsafe(12)
    log = tmp_path / "serve.log"
    log.write_text(
        "\n".join(
            [
                "Dragonfly is serving on http://127.0.0.1:8000/v1",
                _request_line(msg=f"key {KEY} and again {KEY}"),
                f"Authorization: Bearer {token}",
                f'{{"password": "{password}"}}',
                "x" * 500 + KEY + "y" * 500,
            ]
        )
    )
    scanned, found = scan_files([log, tmp_path / "removed.log"])
    assert scanned == 1 and [f.line_no for f in found[log]] == [2, 3, 4, 5]
    report = format_report(found) + "\n".join(find_secrets(log.read_text()))
    assert str(log) in report and "line 2 [api key]" in report
    for secret in (KEY, token, password):
        assert secret not in report
        # Not even a third of it.
        assert all(secret[i : i + len(secret) // 3 + 1] not in report for i in range(len(secret) // 2))
    assert KEY[:10] + "…" in report and KEY[:11] not in report  # `sk-df-` and 4 characters
    assert all(len(f.excerpt) <= 170 for f in found[log])  # a long line is cut around the secret


def test_redact_shows_at_most_a_third_and_ten_characters() -> None:
    assert redact(KEY) == KEY[:10] + "…"
    assert redact("hunter2") == "hu…"
    assert redact("abc") == "a…"
    assert redact("ab") == "…"


_LEAKY_TEST = """
import sys


def test_a_process_prints_a_key(processes, tmp_path):
    proc = processes.start([sys.executable, "-c", "print('used {key}')"], ready_port=None)
    proc.proc.wait(timeout=10)
"""


@pytest.mark.parametrize(
    "workers", [pytest.param([], id="one process"), pytest.param(["-n", "2"], id="xdist")]
)
def test_a_secret_in_a_process_log_fails_the_run(tmp_path: Path, workers: list[str]) -> None:
    """The session-end scan (tests/conftest.py) as pytest runs it, also under pytest-xdist, where the
    process that leaked ran in a worker: the run fails, names the log, and never repeats the key."""
    tests_dir = Path(__file__).resolve().parents[1]
    (tmp_path / "test_leak.py").write_text(_LEAKY_TEST.format(key=KEY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", *workers,
         "--rootdir", str(tmp_path), str(tmp_path / "test_leak.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "1 passed" in out, out
    assert "secrets in process logs" in out and "line(s) with a secret in 1 of 1 process logs" in out, out
    assert KEY not in out
