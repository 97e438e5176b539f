"""Log line formats for every dragonfly process (`DRAGONFLY_LOG_FORMAT`, docs/operator.md "Metrics and logs").

- `json` (the default): one JSON object per line, `{"ts", "level", "logger", "msg", ...fields}`, written
  with orjson. A record's `fields` (passed as `extra={"fields": {...}}`, e.g. the data plane's request
  line) become top-level keys; an exception becomes `exc`.
- `text`: `time LEVEL logger message`, the fields appended as one JSON object.

Nothing here decides what is logged: callers never pass a secret (ARCHITECTURE.md, invariant 6).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; the timestamp is UTC, RFC 3339 with milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second of log lines
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"

    def line(self, created: float, level: str, name: str, msg: str, fields: Any = None) -> dict[str, Any]:
        ts = self._ts(created)
        out: dict[str, Any] = {"ts": ts, "level": level, "logger": name, "msg": msg}
        if fields:
            out.update(fields)
            if len(out) != 4 + len(fields):  # a field named like one of the four: the four win
                out.update(ts=ts, level=level, logger=name, msg=msg)
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        out = self.line(record.created, record.levelname, record.name, record.getMessage(), fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message`, and the record's fields as one JSON object after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + orjson.dumps(fields, default=str).decode()
        return line


class FastInfo:
    """`logger.info(msg, extra={"fields": fields})` for a line written on every request (the data
    plane's request line). When the logger's records end, as `setup` arranged them, at the root's one
    plain stream handler with the JSON format, the same line is written straight to that handler's
    stream under its lock, without a LogRecord: about 4x cheaper (benchmarks/micro/bench_metrics.py).
    Any other arrangement (handlers or filters of its own, a test's capture handler, the text format)
    goes through logging as usual. The caller checks `logger.isEnabledFor(logging.INFO)` first."""

    def __init__(self, logger: logging.Logger, root: logging.Logger | None = None) -> None:
        self.logger = logger
        self._root = root or logging.getLogger()

    def _handler(self) -> logging.StreamHandler[Any] | None:
        """The handler every record of the logger ends at, when it is the JSON stream handler alone."""
        handlers = self._root.handlers
        if len(handlers) != 1 or self._root.filters:
            return None
        handler = handlers[0]
        if type(handler) is not logging.StreamHandler or type(handler.formatter) is not JsonFormatter:
            return None
        if handler.level > logging.INFO or handler.filters:
            return None
        lg: Any = self.logger
        while lg is not self._root:
            if isinstance(lg, logging.Logger) and (lg.handlers or lg.filters or not lg.propagate):
                return None
            lg = lg.parent
        return handler

    def info(self, msg: str, fields: dict[str, Any]) -> None:
        handler = self._handler()
        if handler is None:
            self.logger.info(msg, extra={"fields": fields})
            return
        fmt = handler.formatter
        assert isinstance(fmt, JsonFormatter)
        text = orjson.dumps(fmt.line(time.time(), "INFO", self.logger.name, msg, fields), default=str)
        lock = handler.lock
        assert lock is not None  # made by Handler.__init__
        with lock:
            handler.stream.write(text.decode() + "\n")
            handler.stream.flush()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def setup(level: str, log_format: str) -> None:
    """A process's logging: the root logger at `level`, to stderr, in `log_format` (json | text).
    Records skip what no format here prints (the caller's file and line, thread and process names)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=TEXT_FORMAT)
    apply(log_format)
    # The logging HOWTO's "Optimization": a record otherwise walks the stack for its caller.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def apply(log_format: str) -> None:
    """Give the root logger's plain stderr/stdout handlers (what `logging.basicConfig` installed) the
    chosen format. Other handlers (a test runner's capture, a file handler) are left as they are."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(formatter(log_format))
