"""The demo seller server: `DemoSeller` (in-process, async or in a background thread) and its CLI.

async with DemoSeller(port=0, chunk_delay_s=0.01) as seller:
    seller.base_url          # "http://127.0.0.1:PORT/v1"
    seller.stats.requests    # live counters; seller.config.<knob> = ... changes behaviour at once

with DemoSeller().run_in_thread() as seller:   # own event loop in a daemon thread
    ...

python -m dragonfly.demo.seller --port 9100 [--chunk-delay-s 0.01 ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import click
from aiohttp import web

from dragonfly.demo.handlers import make_app
from dragonfly.demo.knobs import DEFAULT_API_KEY, DEFAULT_MODELS, SellerConfig
from dragonfly.demo.stats import SellerStats

LOOPBACK = "127.0.0.1"


class DemoSeller:
    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        models: Sequence[str] = DEFAULT_MODELS,
        chunk_delay_s: float = 0.0,
        first_token_delay_s: float = 0.0,
        chunks: int | None = None,
        fail_status: int | None = None,
        drop_mid_stream_after: int | None = None,
        omit_usage: bool = False,
        end_delay_s: float = 0.0,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        # Bind with SO_REUSEPORT: the port may be held, not listening, by whoever chose it (`serve`:
        # cli/supervisor.py `reserve_port`) so that nothing else on the host takes it meanwhile.
        self._reuse_port = reuse_port
        self.config = SellerConfig(
            api_key=api_key,
            models=list(models),
            chunk_delay_s=chunk_delay_s,
            first_token_delay_s=first_token_delay_s,
            chunks=chunks,
            fail_status=fail_status,
            drop_mid_stream_after=drop_mid_stream_after,
            omit_usage=omit_usage,
            end_delay_s=end_delay_s,
        )
        self.stats = SellerStats()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo seller is not running")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI `base_url` of this seller."""
        return f"{self.origin}/v1"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the demo seller is already running")
        # handler_cancellation: a client that goes away cancels its handler at once (counted in stats).
        runner = web.AppRunner(
            make_app(self.config, self.stats),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, reuse_port=self._reuse_port or None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> DemoSeller:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def run_in_thread(self, timeout_s: float = 10.0) -> SellerThread:
        """Start the seller on its own event loop in a daemon thread; returns once it listens."""
        return SellerThread(self, timeout_s)


class SellerThread:
    """A `DemoSeller` running in a background thread. A context manager yielding the seller; `stop()`
    may also be called directly (idempotent)."""

    def __init__(self, seller: DemoSeller, timeout_s: float) -> None:
        self.seller = seller
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"demo-seller-{id(seller):x}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            self.stop()
            raise TimeoutError("the demo seller did not start in time")
        if self._error is not None:
            self._thread.join(timeout_s)
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.seller.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self.seller.stop())
            self._loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def __enter__(self) -> DemoSeller:
        return self.seller

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def _serve_forever(seller: DemoSeller) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with seller:
        click.echo(f"demo seller listening on {seller.base_url}", nl=True)
        await stop.wait()


@click.command()
@click.option("--host", default=LOOPBACK, show_default=True, help="Listen address (keep it loopback).")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port (printed).")
@click.option("--api-key", default=DEFAULT_API_KEY, show_default=True, envvar="DEMO_SELLER_API_KEY")
@click.option("--model", "models", multiple=True, default=DEFAULT_MODELS, show_default=True)
@click.option("--chunk-delay-s", type=float, default=0.0, show_default=True)
@click.option("--first-token-delay-s", type=float, default=0.0, show_default=True)
@click.option("--chunks", type=int, default=None, help="Force this many streamed content chunks.")
@click.option("--fail-status", type=int, default=None, help="Answer every request with this HTTP error.")
@click.option("--drop-mid-stream-after", type=int, default=None, help="Close streams after N events.")
@click.option("--omit-usage", is_flag=True, help="Never report usage.")
@click.option("--end-delay-s", type=float, default=0.0, show_default=True, help="Pause after [DONE].")
@click.option("--reuse-port", is_flag=True, help="Bind with SO_REUSEPORT (a port held for this process).")
def main(host: str, port: int, models: tuple[str, ...], **knobs: Any) -> None:
    """Run the Dragonfly demo seller: a deterministic OpenAI-compatible echo upstream."""
    try:
        seller = DemoSeller(host=host, port=port, models=models, **knobs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    asyncio.run(_serve_forever(seller))


if __name__ == "__main__":
    main()
