"""What the buyer is told when a trade ends other than plainly: the SSE framing the data plane writes,
and the messages of answers whose trade was cut short, not recorded, or recorded without confirmation.
Shared by the non-streamed and streamed relays (gateway/chat.py, gateway/stream.py) and the drain
(gateway/app.py)."""

from __future__ import annotations

from dragonfly.errors import ServiceUnavailable

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
# A call the drain deadline cut (gateway/drain.py): the buyer may retry it on another instance.
DRAINED_MESSAGE = "The gateway is shutting down; retry the request."
NOT_RECORDED = "The trade could not be recorded; you were not charged."


def unconfirmed_message(trade_id: str) -> str:
    return (
        "The connection to the database was lost while the trade was recorded and it could not be"
        f" confirmed; GET /v1/generation?id={trade_id} shows whether you were charged."
    )


def part_unconfirmed_message(part_id: str) -> str:
    return (
        "The upstream provider failed mid-stream, and the connection to the database was lost while the"
        " part it had produced was recorded, so the stream was not continued; GET"
        f" /v1/generation?id={part_id} shows whether you were charged for that part."
    )


class TradeUnconfirmed(ServiceUnavailable):
    """A trade's commit whose outcome is not known (its answer was lost with the database connection and
    the database stayed unreachable): it may be recorded and charged, or not. Never "not charged"."""

    def __init__(self, trade_id: str) -> None:
        super().__init__(unconfirmed_message(trade_id), headers={"x-should-retry": "false"})
        self.trade_id = trade_id
