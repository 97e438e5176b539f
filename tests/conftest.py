"""Shared fixtures: throwaway PostgreSQL and Redis (lazy, once per session), databases per test, the demo
seller, and managed subprocesses whose output is printed when a test fails.

Fixtures
  pg_cluster        session   PostgresCluster (started on first use)
  pg_url            session   postgresql://dragonfly@127.0.0.1:PORT/postgres (admin database)
  pg_database_url   function  a fresh empty database `t_<random>`, dropped afterwards
  database_url      function  parametrised [sqlite, postgres]: a fresh sqlite:///… file or PG database
  pg_cutting_proxy  function  CuttingProxy in front of the cluster (support/tcp_cut.py); `.url_for(url)`
  redis_server      session   RedisServer (start/stop/kill/flushall/ping; restarts on the same port)
  redis_url         session   redis://127.0.0.1:PORT/0
  fresh_redis_url   function  redis_url, with the server (re)started if a test stopped it, and flushed
  processes         function  ProcessGroup: .start(argv, ready_port, env) → ManagedProcess, all stopped
  demo_seller       function  a running DemoSeller (defaults) in a background thread
  demo_seller_factory function  make_seller(**knobs) → running DemoSeller; all stopped afterwards

At the end of a session that started processes, every process log still on disk is scanned for secrets
(support/log_scan.py): one found fails the run. Under pytest-xdist (`make test` runs `-n auto`) the
controller scans the logs of every worker.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.log_scan import format_report, scan_files
from support.processes import ProcessGroup, remove_kept_copies, started_log_paths
from support.services import PostgresCluster, RedisServer
from support.tcp_cut import CuttingProxy

from dragonfly.demo.seller import DemoSeller, SellerThread


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item (`item.rep_setup`, `rep_call`) so fixtures see failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


_LOG_SCAN = pytest.StashKey[tuple[bool, str]]()  # (a secret found, what to print)
_WORKER_LOGS = pytest.StashKey[list[str]]()  # pytest-xdist's controller: the logs its workers started
_WORKER_OUTPUT_KEY = "dragonfly_process_logs"


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown to a pytest run without the plugin
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist (controller): a worker finished; keep the logs it started for the scan below."""
    logs = node.config.stash.setdefault(_WORKER_LOGS, [])
    logs.extend(getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY, []))


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down: every process has stopped
def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    """No secret ever in the logs: scan what every process the tests started wrote (printed by
    `pytest_terminal_summary`, which runs after this). Under pytest-xdist each worker hands its list to
    the controller, which scans them all once every worker has finished: a secret fails the whole run."""
    config = session.config
    if hasattr(config, "workerinput"):  # a pytest-xdist worker
        config.workeroutput[_WORKER_OUTPUT_KEY] = [str(p) for p in started_log_paths()]  # type: ignore[attr-defined]
        return
    paths = started_log_paths() + [Path(p) for p in config.stash.get(_WORKER_LOGS, [])]
    if not paths:
        return  # no process started (unit tests only)
    scanned, found = scan_files(paths)
    gone = len(paths) - scanned
    removed = f" ({gone} removed before the scan)" if gone else ""
    if not found:
        session.config.stash[_LOG_SCAN] = (False, f"log scan: {scanned} process logs, no secret{removed}")
        remove_kept_copies(paths)
        return
    lines = sum(len(f) for f in found.values())
    headline = f"log scan: {lines} line(s) with a secret in {len(found)} of {scanned} process logs{removed}"
    session.config.stash[_LOG_SCAN] = (True, f"{format_report(found)}\n{headline}")
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        sys.stderr.write(f"{format_report(found)}\n{headline}\n")
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    failed, text = config.stash.get(_LOG_SCAN, (False, ""))
    if failed:
        terminalreporter.write_sep("=", "secrets in process logs", red=True, bold=True)
        terminalreporter.write_line(text, red=True)
    elif text:
        terminalreporter.write_line(text)


# -- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PostgresCluster) -> str:
    return pg_cluster.url()


@pytest.fixture
def pg_database_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_cutting_proxy(pg_cluster: PostgresCluster) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(pg_cluster.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'df.db'}"
    return str(request.getfixturevalue("pg_database_url"))


# -- Redis ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis_url(redis_server: RedisServer) -> str:
    redis_server.start()  # no-op when running; brings it back if an earlier test stopped it
    redis_server.flushall()
    return redis_server.url


# -- subprocesses and the demo seller -------------------------------------------------------------------


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path / "proc-logs")
    try:
        yield group
    finally:
        group.stop_all()
        if _test_failed(request.node):
            group.dump()


@pytest.fixture
def demo_seller_factory() -> Iterator[Callable[..., DemoSeller]]:
    threads: list[SellerThread] = []

    def make_seller(**knobs: Any) -> DemoSeller:
        thread = DemoSeller(**knobs).run_in_thread()
        threads.append(thread)
        return thread.seller

    yield make_seller
    for thread in threads:
        thread.stop()


@pytest.fixture
def demo_seller(demo_seller_factory: Callable[..., DemoSeller]) -> DemoSeller:
    return demo_seller_factory()
