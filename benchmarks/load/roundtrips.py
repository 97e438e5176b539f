"""Redis commands and PostgreSQL transactions per request of a Dragonfly target on PostgreSQL + Redis,
under the load run's load (Locust, the same scenarios and connections):

    python -m benchmarks.load.roundtrips [--target pg-redis-x2] [--scenarios chat,stream] [--duration 5]

Redis: INFO commandstats before and after each load (calls and µs per command, the admission and
settlement scripts are EVALSHA). PostgreSQL: pg_stat_database of the gateway's database (transactions
committed, rows written); a backend reports its counts when idle, at most ~1 s late (PostgreSQL 15), so
the second reading waits `--settle` seconds after the load. What the instances do when idle (background
polls) is measured first over an idle window of `--idle` seconds and subtracted (pro rata). Prints one JSON
object (also written to the results directory).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.load import harness, services, targets
from benchmarks.load.harness import RESULTS, run_locust

PG_COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched")


def redis_info(port: int, section: str) -> str:
    """One `INFO <section>` (a RESP bulk string) over a fresh connection."""
    with socket.create_connection((services.LOOPBACK, port), timeout=5.0) as sock:
        sock.sendall(f"INFO {section}\r\n".encode())
        f = sock.makefile("rb")
        head = f.readline()
        if not head.startswith(b"$"):
            raise RuntimeError(f"unexpected INFO reply: {head!r}")
        return f.read(int(head[1:])).decode()


def redis_commandstats(port: int) -> dict[str, tuple[int, int]]:
    """`INFO commandstats`: command -> (calls, usec)."""
    out: dict[str, tuple[int, int]] = {}
    for line in redis_info(port, "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            kv = dict(item.split("=", 1) for item in rest.split(","))
            out[name.removeprefix("cmdstat_")] = (int(kv["calls"]), int(kv["usec"]))
    return out


def pg_stats(cluster: Any, database: str) -> dict[str, int]:
    row = cluster.psql(
        f"SELECT {', '.join(PG_COLUMNS)} FROM pg_stat_database WHERE datname = '{database}'"
    ).strip()
    return dict(zip(PG_COLUMNS, (int(x) for x in row.split("|")), strict=True))


def snapshot(redis_port: int, cluster: Any, database: str) -> dict[str, Any]:
    return {"t": time.monotonic(), "redis": redis_commandstats(redis_port), "pg": pg_stats(cluster, database)}


def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    redis = {}
    for cmd, (calls, usec) in b["redis"].items():
        c0, u0 = a["redis"].get(cmd, (0, 0))
        if calls - c0:
            redis[cmd] = {"calls": calls - c0, "usec": usec - u0}
    return {
        "seconds": b["t"] - a["t"],
        "redis": redis,
        "pg": {k: b["pg"][k] - a["pg"][k] for k in PG_COLUMNS},
    }


def per_request(load: dict[str, Any], idle: dict[str, Any], requests: int) -> dict[str, Any]:
    """The load window's counts less the idle rate over the same time, per request."""
    scale = load["seconds"] / idle["seconds"]
    redis = {}
    for cmd, v in load["redis"].items():
        if cmd == "info":  # this script's own readings
            continue
        bg = idle["redis"].get(cmd, {"calls": 0, "usec": 0})
        calls = v["calls"] - bg["calls"] * scale
        redis[cmd] = {
            "per_request": calls / requests,
            "usec_per_call": v["usec"] / v["calls"] if v["calls"] else 0.0,
        }
    # commandstats counts the commands a script runs as well as the EVALSHA that ran it, and the
    # EVALSHA's µs include theirs: the client's round trips are the EVALSHAs (plus any command outside a
    # script), the Redis time per request their µs.
    scripts = redis.get("evalsha", {"per_request": 0.0, "usec_per_call": 0.0})
    pg = {k: (load["pg"][k] - idle["pg"][k] * scale) / requests for k in PG_COLUMNS}
    return {
        "redis_commands_incl_script_calls": sum(x["per_request"] for x in redis.values()),
        "redis_evalsha_per_request": scripts["per_request"],
        "redis_evalsha_usec_per_request": scripts["per_request"] * scripts["usec_per_call"],
        "redis": redis,
        "pg": pg,
    }


@click.command()
@click.option(
    "--target", "target_name", type=click.Choice(["pg-redis", "pg-redis-x2"]), default="pg-redis-x2"
)
@click.option("--scenarios", default="chat,stream", show_default=True)
@click.option("--duration", type=float, default=5.0, show_default=True, help="Seconds of load per scenario.")
@click.option("--users", type=int, default=64, show_default=True)
@click.option("--stream-users", type=int, default=16, show_default=True)
@click.option("--idle", type=float, default=12.0, show_default=True, help="Idle window (background rate).")
@click.option("--settle", type=float, default=11.0, show_default=True, help="Wait before a PG reading.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(
    target_name: str,
    scenarios: str,
    duration: float,
    users: int,
    stream_users: int,
    idle: float,
    settle: float,
    out: Path,
) -> None:
    load0 = harness.loadavg()
    services.raise_fd_limit()
    out_dir = out / f"roundtrips-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    seller = targets.start_fake_seller(log_dir)
    owned: list[Any] = []
    target = None
    try:
        start = targets.start_pg_redis_x2 if target_name == "pg-redis-x2" else targets.start_pg_redis
        target, owned = start(log_dir, seller)
        cluster, redis_port, database = owned[0], target.extra["redis_port"], "dragonfly_bench"
        # Warm up (caches, connection pools), let PostgreSQL report it, then the idle rate.
        run_locust(target, "chat", users=users, duration_s=3, out_dir=out_dir, tag="warmup")
        time.sleep(settle)
        a = snapshot(redis_port, cluster, database)
        time.sleep(idle)
        idle_delta = delta(a, snapshot(redis_port, cluster, database))
        result: dict[str, Any] = {
            "target": target_name,
            "idle": idle_delta,
            "scenarios": {},
        }
        for scenario in scenarios.split(","):
            n_users = stream_users if harness.is_stream(scenario) else users
            s0 = snapshot(redis_port, cluster, database)
            r = run_locust(
                target,
                scenario,
                users=n_users,
                duration_s=duration,
                out_dir=out_dir,
                tag=scenario,
                seller_roots=seller.roots,
            )
            time.sleep(settle)
            load = delta(s0, snapshot(redis_port, cluster, database))
            n = r.requests()
            result["scenarios"][scenario] = {
                "requests": n,
                "errors": r.errors,
                "rps": r.summary()["rps"],
                "requests_by_instance": r.summary().get("requests_by_instance"),
                "window": load,
                "per_request": per_request(load, idle_delta, n),
            }
        result["environment"] = harness.environment(load0)
        (out_dir / "roundtrips.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        if target is not None:
            target.stop()
        seller.stop()
        for s in reversed(owned):
            (s.close if hasattr(s, "close") else s.stop)()


if __name__ == "__main__":
    main()
