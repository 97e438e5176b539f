"""A loopback TCP proxy that loses connections the way a network does, for tests of what a client does when
the answer to a write never comes.

`CuttingProxy(port)` listens on 127.0.0.1 and forwards every connection to `127.0.0.1:port`, on a thread
and event loop of its own (so sync tests and tests whose server runs in another process can use it).
`arm(marker, ...)` picks the next chunk a client sends that contains `marker` and then:

- `deliver=True`: forwards it, resets the client's side at once and closes the server's side only after
  `grace_s`, so the server runs what it got and its answer is lost — "committed, but the client saw a
  reset";
- `deliver=False`: drops it and resets both sides — "lost before it reached the server".

`refuse = True` closes every new connection at once (the server unreachable). `cuts` counts the cuts made.
The fixture `pg_cutting_proxy` (tests/conftest.py) puts one in front of the PostgreSQL test cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

# The PostgreSQL settlement statement's one parameter, a jsonb document, starts with its trades
# (storage/sql/repos/settlement.py `one_statement`); no other query sends these bytes.
SETTLEMENT_STATEMENT = b'{"t":['


@dataclass
class _Arm:
    marker: bytes
    deliver: bool
    grace_s: float


class CuttingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self.refuse = False
        self._arm: _Arm | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cutting-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> CuttingProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def arm(self, marker: bytes, *, deliver: bool, grace_s: float = 0.5) -> None:
        with self._lock:
            self._arm = _Arm(marker, deliver, grace_s)

    def url_for(self, database_url: str) -> str:
        """`database_url` with its port replaced by the proxy's."""
        return database_url.replace(f":{self.target_port}/", f":{self.port}/", 1)

    def _take_arm(self, chunk: bytes) -> _Arm | None:
        with self._lock:
            arm = self._arm
            if arm is None or arm.marker not in chunk:
                return None
            self._arm = None
            self.cuts += 1
            return arm

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refuse:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        back = asyncio.create_task(self._pump(server_r, client_w))
        try:
            while chunk := await client_r.read(65536):
                arm = self._take_arm(chunk)
                if arm is None:
                    server_w.write(chunk)
                    await server_w.drain()
                    continue
                client_w.transport.abort()  # the client sees a reset now, whatever comes back
                back.cancel()
                if arm.deliver:
                    server_w.write(chunk)
                    await server_w.drain()
                    await asyncio.sleep(arm.grace_s)  # the server runs it; its answer goes nowhere
                break
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            back.cancel()
            client_w.transport.abort()
            server_w.transport.abort()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
            dst.transport.abort()
