"""The load harness's scale-out target (`pg-redis-x2`, benchmarks/load/targets.py): nginx's config for one
or two upstreams (round robin over one `server` line per instance, the upstream keep-alive timeout below
the gateway's idle limit), the per-instance request count read from /metrics, the harness's merging of
per-instance counts over rounds, and the round-trip script's arithmetic (benchmarks/load/roundtrips.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load import roundtrips, targets  # noqa: E402
from benchmarks.load.harness import LoadRun  # noqa: E402

TEMPLATE = (ROOT / "benchmarks" / "load" / "nginx.conf.template").read_text()


def _upstream_block(conf: str) -> str:
    m = re.search(r"upstream seller \{(.*?)\}", conf, re.S)
    assert m is not None
    return m.group(1)


def test_one_upstream_renders_the_plain_proxy(tmp_path: Path) -> None:
    conf = targets.render_nginx_conf(TEMPLATE, root=tmp_path, port=8080, upstream_ports=[9001])
    block = _upstream_block(conf)
    assert re.findall(r"server 127\.0\.0\.1:(\d+);", block) == ["9001"]
    assert "keepalive_timeout 60s;" in block  # nginx's default: the `nginx` target is unchanged
    assert "listen 127.0.0.1:8080 backlog=4096;" in conf
    assert f"pid {tmp_path}/nginx.pid;" in conf
    assert "@" not in re.sub(r"#.*", "", conf)


def test_two_upstreams_round_robin_with_a_short_keepalive(tmp_path: Path) -> None:
    conf = targets.render_nginx_conf(
        TEMPLATE, root=tmp_path, port=8080, upstream_ports=[9001, 9002], upstream_keepalive_timeout="5s"
    )
    block = _upstream_block(conf)
    # One server line per instance, same indentation, in order; no balancing directive (round robin).
    assert re.findall(r"^        server 127\.0\.0\.1:(\d+);$", block, re.M) == ["9001", "9002"]
    assert not re.search(r"\b(least_conn|ip_hash|hash|random)\b", block)
    assert "keepalive 512;" in block and "keepalive_timeout 5s;" in block
    # Streams pass through unbuffered, like deploy/nginx.conf.
    assert "proxy_buffering off;" in conf and "proxy_http_version 1.1;" in conf
    assert 'proxy_set_header Connection "";' in conf


def test_render_refuses_what_it_cannot_fill(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        targets.render_nginx_conf(TEMPLATE, root=tmp_path, port=1, upstream_ports=[])
    with pytest.raises(ValueError, match="exactly one"):
        targets.render_nginx_conf("http {}", root=tmp_path, port=1, upstream_ports=[2])
    with pytest.raises(ValueError, match="unfilled"):
        targets.render_nginx_conf(
            TEMPLATE + "\nerror_log @ELSEWHERE@;\n", root=tmp_path, port=1, upstream_ports=[2]
        )


@pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="no nginx")
def test_nginx_accepts_the_two_upstream_config(tmp_path: Path) -> None:
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / d).mkdir()
    conf = targets.render_nginx_conf(
        TEMPLATE, root=tmp_path, port=18080, upstream_ports=[19001, 19002], upstream_keepalive_timeout="5s"
    )
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    out = subprocess.run(
        [targets.nginx_binary(), "-t", "-c", str(path), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_metric_total_sums_every_labelled_sample() -> None:
    text = "\n".join(
        [
            "# HELP dragonfly_trades_total Inference requests",
            "# TYPE dragonfly_trades_total counter",
            'dragonfly_trades_total{model="demo/echo-1",status="completed"} 120.0',
            'dragonfly_trades_total{model="demo/echo-1",status="failed"} 3.0',
            "dragonfly_trades_created 1.7e9",
            "dragonfly_trades_total_other 99.0",
        ]
    )
    assert targets.metric_total(text, "dragonfly_trades_total") == 123.0
    assert targets.metric_total("", "dragonfly_trades_total") == 0.0


def test_per_instance_counts_add_up_over_rounds() -> None:
    a = LoadRun("pg-redis-x2", "chat", 64, 0.0, wall_s=8.0, cpu_s=4.0, locust_cpu_s=2.0, host_cpu_s=15.0)
    a.instance_trades = [100.0, 98.0]
    b = LoadRun("pg-redis-x2", "chat", 64, 0.0, wall_s=8.0, cpu_s=4.0, locust_cpu_s=2.0, host_cpu_s=15.0)
    b.instance_trades = [50.0, 51.0]
    a.add(b)
    assert a.instance_trades == [150.0, 149.0]
    s = a.summary()
    assert s["requests_by_instance"] == [150, 149]
    assert s["cores_busy"]["target"] == pytest.approx(0.5)
    assert s["cores_busy"]["locust"] == pytest.approx(0.25)
    assert s["cores_busy"]["host"] == pytest.approx(1.875)
    assert "requests_by_instance" not in LoadRun("pg-redis", "chat", 64, 0.0).summary()


def test_round_trips_per_request_subtract_the_idle_rate() -> None:
    idle = {
        "seconds": 10.0,
        "redis": {"evalsha": {"calls": 10, "usec": 500}, "info": {"calls": 1, "usec": 50}},
        "pg": dict.fromkeys(roundtrips.PG_COLUMNS, 0) | {"xact_commit": 100},
    }
    load = {
        "seconds": 20.0,
        "redis": {
            "evalsha": {"calls": 2020, "usec": 2020 * 40},
            "hincrby": {"calls": 9000, "usec": 4500},
            "info": {"calls": 3, "usec": 90},
        },
        "pg": dict.fromkeys(roundtrips.PG_COLUMNS, 0) | {"xact_commit": 600, "tup_inserted": 7000},
    }
    per = roundtrips.per_request(load, idle, 1000)
    assert per["redis_evalsha_per_request"] == pytest.approx(2.0)  # (2020 - 10 × 2) / 1000
    assert per["redis_evalsha_usec_per_request"] == pytest.approx(80.0)
    assert per["redis_commands_incl_script_calls"] == pytest.approx(11.0)  # INFO (the readings) left out
    assert per["pg"]["xact_commit"] == pytest.approx(0.4)  # (600 - 100 × 2) / 1000
    assert per["pg"]["tup_inserted"] == pytest.approx(7.0)
