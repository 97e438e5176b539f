"""The demo seller's deterministic "speech": audio whose bytes are a pure function of the request, so a
test can compare what a buyer received with what the seller sent.

- 24 kHz, 16-bit signed little-endian, mono PCM (OpenAI's `pcm` format); `wav` is the same samples
  behind a 44-byte RIFF header. No other format is synthesised (the demo has no mp3/opus/aac/flac
  encoder): those are refused with 400.
- Each input character (Unicode code point) becomes a square-wave tone of `CHAR_MS` milliseconds
  (divided by `speed`), its pitch chosen by the code point, so the length grows with the input and
  different inputs sound different.
- The body is streamed in pieces of `CHUNK_BYTES` (the last one shorter); the WAV header rides in the first.
"""

from __future__ import annotations

import struct
from functools import lru_cache

SAMPLE_RATE = 24_000
CHAR_MS = 20
CHUNK_BYTES = 4_800  # 100 ms of audio
AMPLITUDE = 6_000
FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}
DEFAULT_FORMAT = "wav"


@lru_cache(maxsize=1024)
def _tone(code_point: int, samples: int) -> bytes:
    period = 8 + code_point % 56  # samples per cycle: 428 Hz .. 3 kHz
    half = period // 2
    return struct.pack(
        f"<{samples}h", *(AMPLITUDE if i % period < half else -AMPLITUDE for i in range(samples))
    )


def pcm(text: str, speed: float = 1.0) -> bytes:
    samples = max(1, round(SAMPLE_RATE * CHAR_MS / 1000 / speed))
    return b"".join(_tone(ord(c), samples) for c in text)


def wav_header(data_bytes: int) -> bytes:
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


def speech(text: str, response_format: str = DEFAULT_FORMAT, speed: float = 1.0) -> bytes:
    """The whole audio file the demo seller answers for this input (what the buyer must receive)."""
    data = pcm(text, speed)
    return wav_header(len(data)) + data if response_format == "wav" else data


def chunks(audio: bytes) -> list[bytes]:
    return [audio[i : i + CHUNK_BYTES] for i in range(0, len(audio), CHUNK_BYTES)]
