"""The data plane's metrics and log lines, in process (gateway/telemetry.py, dragonfly/logfmt.py): the
deferred counts add up to what prometheus_client would have counted, failures are classified, the fast
request line is the logging module's line, and `serve`'s metrics directory starts empty."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from dragonfly import logfmt
from dragonfly.cli.serve import fresh_metrics_dir
from dragonfly.config import Settings
from dragonfly.errors import InvalidRequest, ServiceUnavailable, UpstreamError
from dragonfly.gateway import telemetry as tm
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo, Snapshot
from dragonfly.gateway.trade import Attempt, TradeState
from dragonfly.storage.state.ports import StateUnavailable


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_deferred_histogram_and_counter_add_up_to_direct_ones() -> None:
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 7.0, 299.0, 1e6]
    direct, deferred = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("t_seconds", "x", ("m",), buckets=tm.DURATION_BUCKETS, registry=direct)
    h2 = Histogram("t_seconds", "x", ("m",), buckets=tm.DURATION_BUCKETS, registry=deferred)
    c1 = Counter("t_things", "x", registry=direct)
    c2 = Counter("t_things", "x", registry=deferred)
    queue: list[tm.LocalCounter | tm.LocalHistogram] = []
    local_h = tm.LocalHistogram(h2.labels("a"), tm.DURATION_BUCKETS, queue)
    local_c = tm.LocalCounter(c2, queue)
    for v in values:
        h1.labels("a").observe(v)
        local_h.observe(v)
        c1.inc()
        local_c.inc()
    assert queue == [local_h, local_c]  # queued once each, however many changes
    assert _samples(deferred)[("t_things_total", ())] == 0.0  # nothing until the flush
    for local in queue:
        local.flush()
    assert _samples(direct) == _samples(deferred)
    local_h.flush()  # a second flush adds nothing
    assert _samples(direct) == _samples(deferred)


def _listing() -> ListingInfo:
    return ListingInfo(
        id="lst-1",
        seller_id="s",
        model="demo/echo-1",
        upstream_model="echo-1",
        kind="chat",
        provider="custom",
        base_url="http://127.0.0.1:1/v1",
        api_key="sk-provider-secret",
        input_price=1,
        output_price=2,
        cached_input_price=None,
        rpm_cap=None,
        concurrency_cap=None,
        context_length=None,
        status="active",
        contract_status="degraded",
    )


def _telemetry() -> tuple[tm.Telemetry, TradeState]:
    listing = _listing()
    snap = Snapshot(1, {}, {}, {}, {listing.model: (listing,)}, {listing.id: listing})
    t = tm.Telemetry(Settings(), lambda: snap, lambda: None, lambda: None)
    key = KeyInfo("key-1", "acct-1", None, None, (), ())
    trade = TradeState(request_id="req-1", key=key, model=listing.model, streamed=True)
    trade.listing, trade.ttft_ms = listing, 12
    trade.attempts += [Attempt("lst-1", "custom", "timeout", 5000), Attempt("lst-1", "custom", "ok", 20)]
    return t, trade


def test_trade_done_counts_after_a_flush_with_bounded_labels() -> None:
    t, trade = _telemetry()
    t.trade_done("chat", trade, "demo/echo-1", "completed", None)
    t.trade_done("chat", trade, "demo/echo-1", "completed", None)
    t.trade_done("chat", trade, "made/up-model", "refused", "model_not_found")
    t.sample()
    s = _samples(t.output)
    trades = "dragonfly_trades_total"
    key = (("error_code", ""), ("listing_id", "lst-1"), ("model", "demo/echo-1"), ("status", "completed"))
    assert s[(trades, key)] == 2.0
    other = (("error_code", "model_not_found"), ("listing_id", "lst-1"), ("model", "_other"))
    assert s[(trades, (*other, ("status", "refused")))] == 1.0
    assert s[("dragonfly_ttft_seconds_count", (("model", "demo/echo-1"),))] == 2.0
    assert s[("dragonfly_upstream_seconds_count", (("listing_id", "lst-1"), ("outcome", "timeout")))] == 3.0
    assert s[("dragonfly_listing_health", (("listing_id", "lst-1"), ("model", "demo/echo-1")))] == 1.0
    assert not any("key-1" in str(k) or "acct-1" in str(k) for k in s)
    assert t.failures == 0


def test_a_failure_on_its_way_out_is_classified_and_marked() -> None:
    t, trade = _telemetry()
    with pytest.raises(StateUnavailable) as raised:
        try:
            raise StateUnavailable()
        finally:
            t.trade_done("chat", trade, "demo/echo-1", "refused", "service_unavailable")
    assert getattr(raised.value, tm._LOGGED) is True
    s = _samples(t.output)
    assert s[("dragonfly_state_store_errors_total", (("operation", "admit"),))] == 1.0


def test_failure_kind() -> None:
    def settle_failed() -> ServiceUnavailable:
        try:
            try:
                raise sqlite3.OperationalError("database is locked")
            except Exception:
                raise ServiceUnavailable("The trade could not be recorded.") from None
        except ServiceUnavailable as exc:
            return exc

    assert tm.failure_kind(settle_failed()) == "database"
    assert tm.failure_kind(StateUnavailable()) == "state_store"
    assert tm.failure_kind(UpstreamError("x")) is None
    assert tm.failure_kind(InvalidRequest("x")) is None
    assert tm.failure_kind(None) is None


def test_is_loopback() -> None:
    assert tm.is_loopback("127.0.0.1") and tm.is_loopback("127.8.9.1") and tm.is_loopback("::1")
    assert tm.is_loopback("::ffff:127.0.0.1")
    assert not tm.is_loopback("203.0.113.7") and not tm.is_loopback("") and not tm.is_loopback("x")


def test_fast_request_line_is_the_logging_line() -> None:
    root = logging.Logger("r")
    child = logging.Logger("r.requests")
    child.parent = root
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logfmt.formatter("json"))
    root.addHandler(handler)
    fast = logfmt.FastInfo(child, root)
    fields = {"request_id": "req-1", "latency_ms": 1.5, "msg": "not this one", "ttft_ms": None}
    assert fast._handler() is handler
    fast.info("request", fields)
    child.info("request", extra={"fields": fields})
    one, two = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert one.pop("ts")[-1] == "Z" and two.pop("ts")
    assert (
        one
        == two
        == {
            "level": "INFO",
            "logger": "r.requests",
            "msg": "request",
            "request_id": "req-1",
            "latency_ms": 1.5,
            "ttft_ms": None,
        }
    )
    # Any other arrangement goes through logging: a handler of the logger's own, or the text format.
    child.addHandler(logging.NullHandler())
    assert fast._handler() is None
    child.handlers.clear()
    handler.setFormatter(logfmt.formatter("text"))
    assert fast._handler() is None
    fast.info("request", {"request_id": "req-2"})
    assert stream.getvalue().splitlines()[-1].endswith(' r.requests request {"request_id":"req-2"}')


def test_json_formatter_keeps_exceptions() -> None:
    fmt = logfmt.JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("dragonfly.x", logging.ERROR, "f", 1, "failed: %s", ("x",), sys.exc_info())
    out = orjson.loads(fmt.format(record))
    assert out["msg"] == "failed: x" and out["level"] == "ERROR" and "ValueError: boom" in out["exc"]


def test_log_format_and_metrics_settings() -> None:
    base = {"DRAGONFLY_DATA_DIR": "unused", "DRAGONFLY_SECRET_KEY": "s"}  # no secret file made
    s = Settings.from_env(
        env={**base, "DRAGONFLY_METRICS_TOKEN": "tok", "PROMETHEUS_MULTIPROC_DIR": "/tmp/m"}
    )
    assert s.log_format == "json" and s.metrics_token == "tok" and s.metrics_dir == "/tmp/m"
    assert "tok" not in repr(s)
    assert Settings.from_env(env={**base, "DRAGONFLY_LOG_FORMAT": "TEXT"}).log_format == "text"
    with pytest.raises(ValueError, match="DRAGONFLY_LOG_FORMAT"):
        Settings.from_env(env={**base, "DRAGONFLY_LOG_FORMAT": "xml"})


def test_serve_metrics_dir_is_fresh_and_stale_runs_go(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    stale = root / "run-999999999"  # no such process
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"x")
    other = root / f"run-{os.getppid()}"  # a live process: another serve on this data dir
    other.mkdir()
    run = fresh_metrics_dir(str(tmp_path))
    assert run == root / f"run-{os.getpid()}" and not list(run.iterdir())
    assert not stale.exists() and other.exists()
