"""The demo seller's /v1/audio/speech through the real OpenAI SDK: deterministic audio (a real WAV or raw
PCM whose length follows the input), streamed in pieces, and the knobs that make it slow, break or
declare its length."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable

import openai
import pytest

from dragonfly.demo import audio
from dragonfly.demo.seller import DemoSeller

TEXT = "Hello from the demo seller, été 🎧"


def client(seller: DemoSeller) -> openai.OpenAI:
    return openai.OpenAI(base_url=seller.base_url, api_key=seller.api_key, max_retries=0, timeout=10)


def test_wav_is_deterministic_and_its_length_follows_the_input(demo_seller: DemoSeller) -> None:
    got = client(demo_seller).audio.speech.create(model="echo-1", input=TEXT, voice="alloy").content
    assert got == audio.speech(TEXT, "wav")
    with wave.open(io.BytesIO(got)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, audio.SAMPLE_RATE)
        assert w.getnframes() == len(TEXT) * audio.SAMPLE_RATE * audio.CHAR_MS // 1000
    assert demo_seller.stats.last_request == {"model": "echo-1", "input": TEXT, "voice": "alloy"}


def test_pcm_and_speed(demo_seller: DemoSeller) -> None:
    c = client(demo_seller)
    pcm = c.audio.speech.create(model="echo-1", input="ab", voice="alloy", response_format="pcm").content
    assert pcm == audio.pcm("ab") and len(pcm) == 2 * 480 * 2
    fast = c.audio.speech.create(model="echo-1", input="ab", voice="alloy", response_format="pcm", speed=2.0)
    assert len(fast.content) == len(pcm) // 2


@pytest.mark.parametrize(
    ("changes", "param"),
    [({"response_format": "mp3"}, "mp3"), ({"input": ""}, "input"), ({"speed": 9.0}, "speed")],
)
def test_refusals_are_400(demo_seller: DemoSeller, changes: dict[str, object], param: str) -> None:
    body: dict[str, object] = {"model": "echo-1", "input": "hi", "voice": "alloy", **changes}
    with pytest.raises(openai.BadRequestError) as err:
        client(demo_seller).audio.speech.create(**body)  # type: ignore[arg-type]
    assert param in str(err.value)


def test_audio_is_streamed_in_pieces(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory(chunk_delay_s=0.15)
    expected = audio.speech(TEXT, "wav")
    pieces = audio.chunks(expected)
    assert len(pieces) > 3 and b"".join(pieces) == expected
    with client(seller).audio.speech.with_streaming_response.create(
        model="echo-1", input=TEXT, voice="alloy"
    ) as resp:
        assert resp.headers["content-type"] == "audio/wav" and "content-length" not in resp.headers
        received, completed_at_first = [], None
        for chunk in resp.iter_bytes():
            if completed_at_first is None:
                completed_at_first = seller.stats.completed
            received.append(chunk)
    assert completed_at_first == 0 and b"".join(received) == expected
    deadline = time.monotonic() + 5
    while seller.stats.completed == 0 and time.monotonic() < deadline:  # counted after the last write
        time.sleep(0.01)
    assert seller.stats.completed == 1


def test_declared_length_and_a_drop_mid_audio(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory()
    seller.config.audio_content_length = True
    with client(seller).audio.speech.with_streaming_response.create(
        model="echo-1", input=TEXT, voice="alloy"
    ) as resp:
        assert resp.headers["content-length"] == str(len(audio.speech(TEXT, "wav")))
        assert resp.read() == audio.speech(TEXT, "wav")
    seller.config.drop_mid_stream_after = 1
    with pytest.raises(openai.APIConnectionError):  # a body shorter than its length
        client(seller).audio.speech.create(model="echo-1", input=TEXT, voice="alloy")
    seller.config.audio_content_length = False
    with pytest.raises(openai.APIConnectionError):  # a chunked body without its terminator
        client(seller).audio.speech.create(model="echo-1", input=TEXT, voice="alloy")
