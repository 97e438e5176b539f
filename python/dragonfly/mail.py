"""Outgoing mail: `log` (default, writes the message text to the log), `file` (one `.eml` per message,
written atomically, for tests and local setups) and `smtp` (`smtp://host:port`, `smtps://user:pass@host`).

Only messages Dragonfly writes itself pass through here (verification links); they never contain a
password or an API key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from dragonfly.config import Settings
from dragonfly.ids import new_id, now_ms

log = logging.getLogger("dragonfly.mail")
SENDER = "Dragonfly <no-reply@dragonfly.local>"


class Mailer(Protocol):
    async def send(self, *, to: str, subject: str, text: str) -> None: ...


def _message(to: str, subject: str, text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{new_id()}@dragonfly.local>"
    msg.set_content(text)
    return msg


class LogMailer:
    """The documented default: the message (with its verification link) goes to the server log."""

    async def send(self, *, to: str, subject: str, text: str) -> None:
        log.warning("mail to %s: %s\n%s", to, subject, text)


class FileMailer:
    def __init__(self, directory: str) -> None:
        self._dir = Path(directory)

    def _write(self, data: bytes) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        final = self._dir / f"{now_ms()}-{new_id()}.eml"
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    async def send(self, *, to: str, subject: str, text: str) -> None:
        await asyncio.to_thread(self._write, _message(to, subject, text).as_bytes())


class SmtpMailer:
    def __init__(self, url: str, timeout_s: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("smtp_url must look like smtp://host:port or smtps://user:pass@host:port")
        self._ssl = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._ssl else 25)
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout_s

    def _deliver(self, msg: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self._ssl:
            smtp = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout)
        else:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with smtp:
            if not self._ssl and smtp.has_extn("starttls"):
                smtp.starttls()
            if self._user is not None:
                smtp.login(self._user, self._password or "")
            smtp.send_message(msg)

    async def send(self, *, to: str, subject: str, text: str) -> None:
        await asyncio.to_thread(self._deliver, _message(to, subject, text))


def build_mailer(settings: Settings) -> Mailer:
    backend = settings.mail_backend
    if backend == "log":
        return LogMailer()
    if backend == "file":
        return FileMailer(settings.mail_dir)
    if backend == "smtp":
        if not settings.smtp_url:
            raise ValueError("mail backend smtp needs DRAGONFLY_SMTP_URL")
        return SmtpMailer(settings.smtp_url)
    raise ValueError(f"unknown mail backend {backend!r} (use log, file or smtp)")
