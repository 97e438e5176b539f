"""Graceful drain of a data-plane worker on SIGTERM, with a deadline.

What Granian (RSGI; observed with 2.8.9) does by itself on SIGTERM or SIGINT in a worker: it closes
its listening socket (new connections are refused), closes idle keep-alive connections, lets every
request in flight run on (keep-alive off), and only when the last connection is gone stops the event
loop and calls `__rsgi_del__`. It has no deadline: one long stream keeps the worker alive for as long
as it lasts, and a client that opened a connection and sent half a request head keeps it ~30 s
(Granian's header-read timeout). Its main process waits for the worker without a limit unless
`--workers-kill-timeout` is given (`dragonfly serve` gives it, as a backstop).

So the worker takes SIGTERM over (`Drain.install`, after Granian installed its own handlers) and:

1. `begin`: the app refuses every new request (its in-flight limit drops to 0: 503 `service_unavailable`
   with `retry-after`, for a request that still reaches it on an open connection), and Granian is told
   to shut down as before, by sending this process SIGINT, which Granian's handler still owns.
2. In-flight requests run on until none is left or `timeout_s` passed.
3. At the deadline, every seller connection is cut (`UpstreamClient.drain`): each call still waiting on
   one fails with `UpstreamDrained`, which gateway/chat.py turns into the OpenAI-shaped error event a
   broken stream ends with (code `service_unavailable`, the delivered part settled and billed, no
   continuation at another listing) or, before a first byte, into a 503 — every hold settled or voided.
   They get `END_GRACE_S` to settle and answer.
4. When nothing is in flight, Granian gets `FLUSH_S` to write the last answers and close its
   connections; if it has not stopped by then (a half-open client connection), the worker stops its
   runtime (the settlement log is committed, connections closed) and exits at once.

When Granian stops first, `__rsgi_del__` cancels the drain (`cancel`) and stops the runtime itself.
The request path pays nothing for this: the app keeps its in-flight count for the overload limit anyway,
and the drain polls it (every `POLL_S`) only while draining.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

log = logging.getLogger("dragonfly.gateway.drain")

POLL_S = 0.05
END_GRACE_S = 1.0  # after the deadline: for the requests it ended to settle and send their last bytes
FLUSH_S = 0.5  # after the last request: for Granian to write it out and close its connections


class Drain:
    def __init__(
        self,
        timeout_s: float,
        *,
        inflight: Callable[[], int],
        refuse_new: Callable[[], None],
        cut: Callable[[], int],
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self.timeout_s = timeout_s
        self._inflight = inflight
        self._refuse_new = refuse_new
        self._cut = cut
        self._stop = stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._exiting = False

    @property
    def started(self) -> bool:
        return self._task is not None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take SIGTERM over from Granian (its handler stays on SIGINT, which `begin` sends)."""
        self._loop = loop
        try:
            loop.add_signal_handler(signal.SIGTERM, self.begin)
        except (NotImplementedError, RuntimeError):  # no signal support on this loop: Granian's own stop
            log.warning("SIGTERM drain deadline unavailable on this event loop")

    def begin(self) -> None:
        if self._task is not None or self._loop is None:
            return  # Granian's main process sends its own SIGTERM after the one `serve` sent
        self._refuse_new()
        self._task = self._loop.create_task(self._run(), name="drain")
        log.info("draining: %d request(s) in flight, deadline %.1f s", self._inflight(), self.timeout_s)
        os.kill(os.getpid(), signal.SIGINT)  # Granian: stop accepting, close idle connections

    def cancel(self) -> None:
        """Granian stopped on its own (every connection closed): it calls `__rsgi_del__`, which stops
        the runtime; the drain has nothing left to do."""
        if self._task is not None and not self._exiting:
            self._task.cancel()

    async def _idle_within(self, seconds: float) -> None:
        """Until nothing is in flight, for at most `seconds`. Polled: an event would cost every request a
        check on its way out, and this runs only while draining."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while self._inflight() and loop.time() < until:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)

    async def _run(self) -> None:
        await self._idle_within(self.timeout_s)
        left = self._inflight()
        if left:
            cut = self._cut()
            log.warning(
                "drain deadline: ending %d request(s) in flight (%d seller connection(s) cut)", left, cut
            )
            await self._idle_within(END_GRACE_S)
        await asyncio.sleep(FLUSH_S)
        # Still here: Granian waits on a connection without a request (e.g. half a request head).
        self._exiting = True
        left = self._inflight()
        if left:
            log.error("drain: %d request(s) did not end; exiting anyway", left)
        try:
            await asyncio.shield(self._stop())
        finally:
            log.info("drained; worker exits")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
