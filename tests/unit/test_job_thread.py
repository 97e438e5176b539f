"""storage/sql/job_thread.py: the SQLite driver's lean run_in_executor (one thread, jobs in order)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dragonfly.storage.sql.job_thread import JobThread


async def test_jobs_run_on_the_thread_in_order_and_return_their_results() -> None:
    thread = JobThread("test-jobs")
    seen: list[int] = []

    def job(i: int) -> str:
        seen.append(i)
        return threading.current_thread().name

    names = await asyncio.gather(*(thread.run(job, i) for i in range(50)))
    assert seen == list(range(50)) and set(names) == {"test-jobs"}
    thread.stop()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    thread = JobThread("test-jobs")

    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await thread.run(fail)
    assert await thread.run(lambda: 7) == 7
    thread.stop()


async def test_a_cancelled_caller_leaves_the_job_running_and_the_thread_serving() -> None:
    thread = JobThread("test-jobs")
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.05)
        done.set()

    waiter = asyncio.ensure_future(thread.run(slow))
    await asyncio.sleep(0.01)
    waiter.cancel()
    assert await thread.run(done.is_set)  # ran after `slow`, which finished although nobody waited
    thread.stop()


def test_stop_ends_the_thread_after_the_jobs_already_submitted() -> None:
    ran: list[str] = []

    async def main() -> JobThread:
        thread = JobThread("test-jobs")
        fut = thread.run(time.sleep, 0.05)
        thread.run(ran.append, "after")  # never awaited: the loop is gone when it ends
        thread.stop()
        await fut
        return thread

    thread = asyncio.run(main())
    thread._thread.join(timeout=5)
    assert ran == ["after"] and not thread._thread.is_alive()
