"""The simulator runs the gateway's routing code, not a copy of it (issue 20): these tests fail if the
simulator's ranking or attempt plan diverge from the gateway's on the same inputs.

* Every request the simulator routes goes through `gateway.routing.plan_route` — the data plane's own
  entry point (gateway/chat.py `_candidates`) — and a gateway `Router` fed the same snapshots and the same
  live outcomes answers each of those calls with the same candidates and the same plan.
* One request against scripted sellers gives the same attempts (listing, status) and the same outcome in
  the simulator as in the gateway's own `Inference._attempts`, driven with fake sellers.
"""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from dragonfly.config import Settings
from dragonfly.domain.calendar import month_of
from dragonfly.errors import DragonflyError
from dragonfly.gateway import routing
from dragonfly.gateway.chat import Inference
from dragonfly.gateway.h1 import UpstreamBroken, UpstreamConnectError, UpstreamTimedOut
from dragonfly.gateway.routing import Router
from dragonfly.gateway.trade import TradeState
from dragonfly.native.tokens import preparse_request
from dragonfly.simulate import SCENARIOS, Engine, load_scenario, parse_scenario
from dragonfly.simulate.events import EPOCH_MS
from dragonfly.simulate.trade import SimTrade
from dragonfly.simulate.traffic import Request
from dragonfly.storage.state.memory import MemoryStateStore
from dragonfly.storage.state.ports import AccountSeed

GATEWAY_PLAN_ROUTE = routing.plan_route


class _TeeMarket:
    """The simulator's native market, with every live outcome also given to a shadow market."""

    def __init__(self, market: Any, shadow: Any) -> None:
        self._market, self._shadow = market, shadow

    def __getattr__(self, name: str) -> Any:
        return getattr(self._market, name)

    def record_result(self, *args: Any) -> bool:
        self._shadow.record_result(*args)
        return bool(self._market.record_result(*args))

    def set_inflight(self, *args: Any) -> bool:
        self._shadow.set_inflight(*args)
        return bool(self._market.set_inflight(*args))


def _decision(call: Any) -> tuple[Any, ...]:
    try:
        candidates, plan = call()
    except DragonflyError as err:
        return ("refused", err.code)
    return ([x.id for x in candidates], plan.max_attempts, sorted(plan.retry_on))


@pytest.mark.parametrize("name", ["seller_outage", "slow_seller"])
def test_every_route_is_the_gateways_plan_route_on_the_same_inputs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(load_scenario(SCENARIOS / f"{name}.toml").scaled(0.15))
    shadow = Router()  # what a gateway would hold: loaded with every snapshot, told every outcome
    shadow.load(engine.market.snapshot)
    router = engine.market.router
    router.market = _TeeMarket(router.market, shadow.market)  # type: ignore[assignment]
    load = router.load

    def load_both(snap: Any) -> None:
        load(snap)
        shadow.load(snap)

    monkeypatch.setattr(router, "load", load_both)
    calls: list[tuple[Any, ...]] = []

    def spy(r: Router, snap: Any, **kw: Any) -> Any:
        assert r is router and snap is engine.market.snapshot
        mine = _decision(lambda: GATEWAY_PLAN_ROUTE(r, snap, **kw))
        gateway = _decision(lambda: GATEWAY_PLAN_ROUTE(shadow, snap, **kw))
        calls.append((mine, gateway))
        return GATEWAY_PLAN_ROUTE(r, snap, **kw)

    monkeypatch.setattr(routing, "plan_route", spy)
    report = engine.run()
    assert len(calls) == report.requests > 1_000  # every request, through the gateway's entry point
    diverged = [(mine, gw) for mine, gw in calls if mine != gw]
    assert diverged == []
    assert len({tuple(mine[0]) for mine, _ in calls if mine[0] != "refused"}) > 1  # the ranking moved


# -- attempts: the simulator against gateway/chat.py `Inference._attempts` ----------------------------

MODEL = "acme/chat-1"
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]})
ANSWER = orjson.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "model": "chat-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
)


def _scenario(outcomes: list[str], fallback: dict[str, Any] | None) -> Any:
    """One listing per outcome, cheapest first (cost_first ranks them in that order): `ok`, or how
    every call to it fails (`connect_error`, `timeout`, `http_<status>`, or `broken_body`: a 200 whose
    body breaks off)."""
    listings = []
    for i, outcome in enumerate(outcomes):
        behaviour: dict[str, Any] = {"kind": "honest"}
        if outcome == "broken_body":
            behaviour = {"kind": "dies_mid_stream", "rate": 1}
        elif outcome != "ok":
            behaviour = {"kind": "outage", "windows": [[0, 10**6]], "fails_as": outcome}
        price = f"0.{i + 1}0"
        listings.append(
            {
                "id": f"l{i + 1}",
                "seller": f"s{i + 1}",
                "model": MODEL,
                "input_price": price,
                "output_price": price,
                "behaviour": behaviour,
            }
        )
    profile: dict[str, Any] = {"id": "p", "strategy": "cost_first", "stream_share": 0}
    if fallback is not None:
        profile["fallback"] = fallback
    return parse_scenario(
        {
            "name": "attempts",
            "duration_s": 1000,
            "models": [{"id": MODEL}],
            "listings": listings,
            "profiles": [profile],
            "traffic": {"rate": 0},
        }
    )


def _simulated(scenario: Any, prompt_tokens: int) -> tuple[list[tuple[str, str]], str]:
    engine = Engine(scenario)
    ended: list[str] = []
    done = engine.request_done

    def record(t: SimTrade, outcome: str, code: str | None, ttft: int | None, served: str | None) -> None:
        ended.append(outcome if code is None else f"{outcome}:{code}")
        done(t, outcome, code, ttft, served)

    engine.request_done = record  # type: ignore[method-assign]
    trade = SimTrade(engine, Request(1, 0, MODEL, prompt_tokens, 5, 4096, False))
    trade.start()
    engine.clock.run(600_000)
    return trade.attempts, ended[0]


class _Response:
    def __init__(self, status: int, body: bytes | None) -> None:
        self.status, self._body = status, body

    async def read(self, limit: int) -> bytes:
        if self._body is None:
            raise UpstreamBroken("the body broke off")
        return self._body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Upstream:
    def __init__(self, outcomes: dict[str, str]) -> None:
        self.outcomes = outcomes

    async def post(self, url: str, api_key: str, body: bytes, accept_sse: bool) -> _Response:
        outcome = self.outcomes[url.split("://", 1)[1].split("/", 1)[0]]
        if outcome == "connect_error":
            raise UpstreamConnectError("refused")
        if outcome == "timeout":
            raise UpstreamTimedOut("silent")
        if outcome == "ok":
            return _Response(200, ANSWER)
        if outcome == "broken_body":
            return _Response(200, None)
        return _Response(int(outcome[5:]), b'{"error":{"message":"no"}}')


class _Nothing:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class _Settler:
    async def settle(self, row: Any, postings: Any) -> None:
        pass


def _gateway(scenario: Any, outcomes: list[str]) -> tuple[list[tuple[str, str]], str]:
    """The same request through gateway/chat.py, with sellers answering as scripted."""
    engine = Engine(scenario)  # only for the snapshot the simulator routes on
    snap = engine.market.snapshot
    key = engine.market.keys[0]
    profile = engine.market.profiles[0]
    router = Router()
    router.load(snap)
    state = MemoryStateStore()
    settings = Settings()
    rt = SimpleNamespace(
        settings=settings,
        snapshot=snap,
        router=router,
        state=state,
        upstream=_Upstream({f"l{i + 1}": o for i, o in enumerate(outcomes)}),
        health=_Nothing(),
        settler=_Settler(),
    )
    inference = Inference(rt)  # type: ignore[arg-type]
    pre = preparse_request(BODY)
    trade = TradeState(request_id="sim-1", key=key, model=MODEL, streamed=False)
    proto = _Nothing()

    async def go() -> str:
        await state.seed(AccountSeed(key.account_id, 10**15, month_of(EPOCH_MS), {key.id: 0}), 0)
        candidates, plan = routing.plan_route(
            router,
            snap,
            kind="chat",
            model=MODEL,
            prompt_tokens=pre.prompt_tokens,
            max_tokens=4096,
            key_profile=profile,
            profile=profile,
            override=None,
            now_ms=EPOCH_MS,
            seed=zlib.crc32(b"sim-1"),
        )
        try:
            outcome, code = await inference._attempts(
                proto, BODY, pre, trade, candidates, plan, EPOCH_MS, profile.hedge_after_ms
            )
        except DragonflyError as err:
            failed = "refused" if all(a.status == "refused" for a in trade.attempts) else "failed"
            return f"{failed}:{err.code}"
        return outcome if code is None else f"{outcome}:{code}"

    ended = asyncio.run(go())
    return [(a.listing_id, a.status) for a in trade.attempts], ended


@pytest.mark.parametrize(
    ("outcomes", "fallback"),
    [
        (["ok", "ok", "ok"], None),
        (["connect_error", "ok", "ok"], None),
        (["http_503", "http_429", "ok"], None),
        (["http_500", "timeout", "ok"], None),
        (["http_503", "http_502", "ok"], {"max_attempts": 2}),
        (["timeout", "ok", "ok"], {"retry_on": ["5xx"]}),
        (["http_429", "ok", "ok"], {"retry_on": ["timeout", "5xx"]}),
        (["http_502", "ok", "ok"], {"enabled": False}),
        (["connect_error", "connect_error", "connect_error"], None),
        (["broken_body", "ok", "ok"], None),
        (["broken_body", "http_503", "ok"], {"max_attempts": 2}),
        (["broken_body", "ok", "ok"], {"retry_on": ["timeout"]}),
    ],
)
def test_the_same_request_makes_the_same_attempts_as_the_gateway(
    outcomes: list[str], fallback: dict[str, Any] | None
) -> None:
    scenario = _scenario(outcomes, fallback)
    gateway = _gateway(scenario, outcomes)
    simulated = _simulated(scenario, preparse_request(BODY).prompt_tokens)
    assert simulated == gateway
    assert gateway[0]  # something was attempted
