"""`start_now`: the first step runs in the caller before it returns, the rest in the task that awaits."""

from __future__ import annotations

import asyncio

import pytest

from dragonfly.gateway.eager import start_now


async def test_a_coroutine_that_never_suspends_is_done_when_start_now_returns() -> None:
    done: list[str] = []

    async def apply() -> int:
        done.append("applied")
        return 7

    pending = start_now(apply())
    assert done == ["applied"]
    assert await pending == 7


async def test_the_first_step_runs_now_and_the_rest_when_awaited() -> None:
    steps: list[str] = []
    reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def call() -> str:
        steps.append("sent")
        answer = await reply
        steps.append("answered")
        return answer.upper()

    pending = start_now(call())
    assert steps == ["sent"]
    reply.set_result("ok")
    await asyncio.sleep(0)
    assert steps == ["sent"]  # nothing resumes it but the awaiting task
    assert await pending == "OK"
    assert steps == ["sent", "answered"]


async def test_bare_yields_and_several_suspensions_pass_through() -> None:
    async def slow() -> int:
        total = 0
        for i in range(5):
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            total += i
        return total

    assert await start_now(slow()) == 10


async def test_an_error_in_the_first_step_is_raised_where_it_is_awaited() -> None:
    async def broken() -> None:
        raise KeyError("boom")

    pending = start_now(broken())  # does not raise here
    with pytest.raises(KeyError):
        await pending


async def test_an_error_after_a_suspension_is_raised_where_it_is_awaited() -> None:
    async def broken_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    with pytest.raises(ValueError, match="later"):
        await start_now(broken_later())


async def test_cancelling_the_awaiting_task_cancels_the_coroutine() -> None:
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("finally")

    pending = start_now(waits_forever())

    async def awaiter() -> None:
        await pending

    task = asyncio.ensure_future(awaiter())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]
