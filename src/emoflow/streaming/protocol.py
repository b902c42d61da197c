"""The WebSocket protocol of ``/v1/stream``, shared by the server and the ``emoflow stream``
client: the ``start`` message, audio frames, close codes.

Client → server: one JSON text message ``{"type": "start", "sample_rate": 16000, "encoding":
"pcm_s16le" | "f32le", "channels": 1, "settings": {...}, "token": "..."}`` (``settings`` as for
uploads, ``token`` only where the client cannot send an ``Authorization`` header, e.g. a
browser), then binary frames of interleaved little-endian samples, then ``{"type": "end"}``.
Server → client: JSON events (``started``, ``window``, ``sentence``, ``error``, ``end``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoflow import config as cfg

ENCODINGS: dict[str, np.dtype[Any]] = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
START_KEYS = frozenset({"type", "sample_rate", "encoding", "channels", "settings", "token", "end_silence_s"})

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # bad input, over a limit, wrong token
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013  # too many streams


class ProtocolError(ValueError):
    """A message the protocol does not allow; its text is sent back in an ``error`` event."""


@dataclass(frozen=True)
class StreamStart:
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    channels: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    end_silence_s: float = cfg.STREAM_END_SILENCE_S

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "type": "start",
            "sample_rate": self.sample_rate,
            "encoding": self.encoding,
            "channels": self.channels,
            "settings": self.settings,
            "end_silence_s": self.end_silence_s,
        }
        if self.token:
            d["token"] = self.token
        return json.dumps(d)

    @property
    def frame_bytes(self) -> int:
        return ENCODINGS[self.encoding].itemsize * self.channels


def parse_start(text: str) -> StreamStart:
    """The ``start`` message, checked; :class:`ProtocolError` names what is wrong."""
    try:
        d = json.loads(text)
    except ValueError:
        raise ProtocolError("the first message must be the JSON start message") from None
    if not isinstance(d, dict) or d.get("type") != "start":
        raise ProtocolError('the first message must be {"type": "start", ...}')
    unknown = set(d) - START_KEYS
    if unknown:
        raise ProtocolError(f"unknown start fields: {', '.join(sorted(unknown))}")
    enc = d.get("encoding", "pcm_s16le")
    if enc not in ENCODINGS:
        raise ProtocolError(f"unknown encoding {enc!r}; use pcm_s16le or f32le")
    rate, ch = d.get("sample_rate"), d.get("channels", 1)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 384_000:
        raise ProtocolError(f"sample_rate must be a whole number from 8000 to 384000, got {rate!r}")
    if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= 32:
        raise ProtocolError(f"channels must be a whole number from 1 to 32, got {ch!r}")
    settings = d.get("settings") or {}
    if not isinstance(settings, dict):
        raise ProtocolError("settings must be a JSON object")
    token = d.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("token must be a string")
    silence = d.get("end_silence_s", 0.6)
    if isinstance(silence, bool) or not isinstance(silence, (int, float)) or not math.isfinite(silence):
        raise ProtocolError(f"end_silence_s must be a number of seconds, got {silence!r}")
    if not 0.1 <= silence <= 10:
        raise ProtocolError(f"end_silence_s must be between 0.1 and 10 s, got {silence}")
    return StreamStart(rate, enc, ch, settings, token, float(silence))


def decode_frame(data: bytes, start: StreamStart) -> np.ndarray:
    """A binary frame → float32 samples ``(frames, channels)``; :class:`ProtocolError` for a byte
    count that is not whole frames, or non-finite float samples."""
    size = start.frame_bytes
    if len(data) % size:
        raise ProtocolError(
            f"an audio frame of {len(data)} bytes is not a whole number of {start.channels}-channel "
            f"{start.encoding} frames ({size} bytes each)"
        )
    a = np.frombuffer(data, dtype=ENCODINGS[start.encoding])
    if start.encoding == "pcm_s16le":
        out = a.astype(np.float32) / 32767.0
    else:
        out = a.astype(np.float32)
        if not np.isfinite(out).all():
            raise ProtocolError("the audio frame holds NaN or infinite samples")
    return out.reshape(-1, start.channels)


def encode_frame(samples: np.ndarray, encoding: str) -> bytes:
    """Float samples in [-1, 1] ``(frames,)`` or ``(frames, channels)`` → a binary frame."""
    if encoding == "pcm_s16le":
        return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    return np.asarray(samples, dtype="<f4").tobytes()
