"""The live analysis over a WebSocket: ``/v1/stream`` (protocol: :mod:`emoflow.streaming.protocol`).

One :class:`~emoflow.streaming.StreamSession` per connection, sharing the server's models
(a pipeline derived for the stream's settings, as uploads get). Frames are taken in as they
arrive and queued; a task feeds them to the session in a worker thread, so a slow model makes
events late (with their ``lag_s``), never drops audio — up to ``max_stream_buffer_s`` of
queued audio, beyond which the stream is refused (``error`` + close 1008). The limits are the
server's :class:`~emoflow.service.settings.ServiceSettings` (``emoflow serve --max-streams``,
...): ``max_streams`` at once (over: close 1013, try again later), ``max_stream_duration_s``
of audio per stream (over: an ``error``, then the ``end`` of what came, close 1008),
``stream_idle_timeout_s`` without a message and ``stream_start_timeout_s`` for the start
message (``error``, close 1008). Malformed messages: an ``error`` naming what was wrong and
close 1008; other streams go on. Auth: the server's bearer token in the ``Authorization``
header, or (browsers cannot set headers on a WebSocket) as ``token`` in the start message.

``/v1/stream?embeddings=npz``: the ``end`` event says ``"embeddings": {"format": "npz",
"bytes": N}`` and one binary message follows it: the result's ``embeddings.npz`` (the arrays
``analyze`` saves), so that a client can rebuild and save the whole result
(``Result.from_dict``), as ``emoflow stream --url --out`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from emoflow.config import PipelineConfig
from emoflow.errors import EmoflowError
from emoflow.pipeline import Pipeline
from emoflow.service.settings import (
    REQUEST_SETTINGS,
    ServiceSettings,
    parse_request_settings,
    request_config,
)
from emoflow.streaming.events import EndEvent, Event
from emoflow.streaming.protocol import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TRY_LATER,
    ProtocolError,
    StreamStart,
    decode_frame,
    parse_start,
)
from emoflow.streaming.session import StreamSession

log = logging.getLogger(__name__)
PIPELINES = 8  # pipelines kept per settings combination
# a stream takes the settings an upload takes: diarisation (live: GE2E), the timeline's mode, ...
STREAM_SETTINGS = REQUEST_SETTINGS
EMBEDDINGS_FORMATS = ("npz",)  # ?embeddings= values


class _Closed(Exception):
    """The stream is over (an error was sent, or the client left)."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code, self.reason = code, reason


def register_stream(app: FastAPI, pipeline: Pipeline, settings: ServiceSettings) -> None:
    """Add ``/v1/stream`` (and the ``/live`` page) to ``app``, built by ``create_app``; its
    limits are ``settings``' (see the module's docstring)."""
    from emoflow.service.app import _static, _token_matches

    max_stream_s = settings.stream_duration_limit(pipeline.config)
    token = settings.token.encode("utf-8") if settings.token else None
    active: set[int] = set()
    pipelines: dict[PipelineConfig, Pipeline] = {}

    def pipeline_for(data: dict[str, Any]) -> Pipeline:
        try:
            parse_request_settings(
                json.dumps(data), pipeline.config, settings.max_duration_s, allowed=STREAM_SETTINGS
            )
        except HTTPException as e:
            raise ProtocolError(str(e.detail)) from None
        # the stream's own limit (the receiver ends the stream there, with its ``end``) replaces
        # the upload limit, which the session would otherwise enforce by failing the stream
        cfg = replace(request_config(pipeline.config, data, settings.max_duration_s), max_duration=None)
        if cfg not in pipelines:
            while len(pipelines) >= PIPELINES:
                pipelines.pop(next(iter(pipelines)))
            pipelines[cfg] = pipeline.derive(cfg)
        return pipelines[cfg]

    @app.get("/live", response_class=HTMLResponse, include_in_schema=False)
    def live() -> str:
        return _static("live.html")

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        sender = _Sender(ws)
        key = id(ws)
        try:
            if len(active) >= settings.max_streams:
                raise _Closed(CLOSE_TRY_LATER, f"{settings.max_streams} streams are running; try again later")
            active.add(key)
            embeddings = ws.query_params.get("embeddings")
            if embeddings is not None and embeddings not in EMBEDDINGS_FORMATS:
                raise await sender.error(f"embeddings={embeddings!r}: use embeddings=npz or leave it out")
            limits = _Limits(settings, max_stream_s, embeddings)
            await _serve(ws, sender, pipeline_for, token, _token_matches, limits)
        except _Closed as c:
            await sender.close(c.code, c.reason)
        except WebSocketDisconnect:
            pass
        finally:
            active.discard(key)


class _Limits:
    """What one stream is held to (from the server's settings) and whether it wants the
    embeddings after its ``end``."""

    def __init__(self, settings: ServiceSettings, max_stream_s: float | None, embeddings: str | None) -> None:
        self.idle_s = settings.stream_idle_timeout_s
        self.start_s = settings.stream_start_timeout_s
        self.max_buffered_s = settings.max_stream_buffer_s
        self.max_stream_s = max_stream_s
        self.embeddings = embeddings


class _Sender:
    """Every message to the client goes through one lock (events and errors come from two tasks)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.lock, self.open = ws, asyncio.Lock(), True

    async def send(self, d: dict[str, Any]) -> None:
        async with self.lock:
            if self.open:
                await self.ws.send_text(json.dumps(d, ensure_ascii=False, allow_nan=False))  # strict JSON

    async def send_end(self, d: dict[str, Any], blob: bytes) -> None:
        """The ``end`` event and, right after it, the embeddings (nothing can come between)."""
        async with self.lock:
            if self.open:
                await self.ws.send_text(json.dumps(d, ensure_ascii=False, allow_nan=False))  # strict JSON
                await self.ws.send_bytes(blob)

    async def error(self, message: str, code: int = CLOSE_POLICY) -> _Closed:
        with contextlib.suppress(Exception):
            await self.send({"type": "error", "message": message})
        return _Closed(code, message[:120])

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            if self.open:
                self.open = False
                with contextlib.suppress(Exception):
                    await self.ws.close(code, reason)


async def _serve(
    ws: WebSocket,
    sender: _Sender,
    pipeline_for: Any,
    token: bytes | None,
    token_matches: Any,
    lim: _Limits,
) -> None:
    header = ws.headers.get("authorization", "")
    try:
        first = await asyncio.wait_for(ws.receive(), lim.start_s)
    except TimeoutError:
        raise await sender.error(f"no start message within {lim.start_s:g} s") from None
    if first["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(first.get("code", 1000))
    try:
        if first.get("text") is None:
            raise ProtocolError("the first message must be the JSON start message, not binary audio")
        start = parse_start(first["text"])
        if token and not (
            token_matches(header, token) or token_matches(f"Bearer {start.token or ''}", token)
        ):
            raise ProtocolError("missing or wrong bearer token")
        p = pipeline_for(start.settings)
        session = await asyncio.to_thread(
            StreamSession,
            p,
            start.sample_rate,
            channels=start.channels,
            end_silence_s=start.end_silence_s,
            background=True,
        )
    except (ProtocolError, EmoflowError) as e:
        raise await sender.error(str(e)) from None
    tl = session.timeline_config
    await sender.send(
        {
            "type": "started",
            "sample_rate": start.sample_rate,
            "encoding": start.encoding,
            "channels": start.channels,
            "window_s": tl.window_s,
            "hop_s": tl.hop_s,
            "timeline": tl.mode,
            "chunk_s": tl.chunk_s,
            "max_buffered_s": lim.max_buffered_s,
            "diarizer": "ge2e" if session.live_speakers is not None else None,
            "labels": list(session.encoder.labels),
            "end_silence_s": start.end_silence_s,
        }
    )
    feeder = _Feeder(session, sender, start, lim)
    task = asyncio.create_task(feeder.run())
    try:
        await _receive(ws, sender, start, feeder, lim)
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        session.close()
    await sender.close(feeder.close_code, feeder.close_reason)


async def _receive(
    ws: WebSocket,
    sender: _Sender,
    start: StreamStart,
    feeder: _Feeder,
    lim: _Limits,
) -> None:
    max_stream_s = lim.max_stream_s
    received = 0  # frames (at the stream's rate)
    limit = None if max_stream_s is None else int(max_stream_s * start.sample_rate)
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), lim.idle_s)
        except TimeoutError:
            raise await sender.error(f"no message for {lim.idle_s:g} s: the stream was closed") from None
        if feeder.failed is not None:
            raise feeder.failed
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        data, text = msg.get("bytes"), msg.get("text")
        if data is not None:
            try:
                frames = decode_frame(data, start)
            except ProtocolError as e:
                raise await sender.error(str(e)) from None
            if limit is not None and received + len(frames) > limit:
                frames = frames[: max(0, limit - received)]
                await sender.send(
                    {
                        "type": "error",
                        "message": f"the stream reached the limit of "
                        f"{max_stream_s:g} s of audio: it ends here",
                    }
                )
                feeder.put(frames)
                feeder.put(None)
                feeder.close_code, feeder.close_reason = CLOSE_POLICY, "stream length limit"
                return
            received += len(frames)
            if feeder.buffered_s + len(frames) / start.sample_rate > lim.max_buffered_s:
                raise await sender.error(
                    f"more than {lim.max_buffered_s:g} s of audio are waiting for the models: "
                    "send at real-time pace or fewer streams at once"
                )
            feeder.put(frames)
        elif text is not None:
            try:
                kind = json.loads(text).get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "end":
                feeder.put(None)
                return
            raise await sender.error('expected binary audio frames or {"type": "end"}, got a text message')


class _Feeder:
    """Feeds queued frames to the session in a worker thread and sends the events."""

    def __init__(self, session: StreamSession, sender: _Sender, start: StreamStart, lim: _Limits) -> None:
        self.session, self.sender, self.rate = session, sender, start.sample_rate
        self.embeddings = lim.embeddings
        self.queue: asyncio.Queue[tuple[np.ndarray | None, float]] = asyncio.Queue()
        self.buffered = 0
        self.failed: _Closed | None = None
        self.close_code, self.close_reason = 1000, "end"

    @property
    def buffered_s(self) -> float:
        return self.buffered / self.rate

    def put(self, frames: np.ndarray | None) -> None:
        if frames is not None:
            self.buffered += len(frames)
        self.queue.put_nowait((frames, time.monotonic()))

    async def run(self) -> None:
        s = self.session
        try:
            while True:
                try:
                    frames, arrived = await asyncio.wait_for(self.queue.get(), 0.2)
                except TimeoutError:
                    for ev in s.poll():
                        await self.send(ev)
                    continue
                if frames is None:
                    for ev in await asyncio.to_thread(s.finish):
                        await self.send(ev)
                    return
                events = await asyncio.to_thread(s.feed, frames, arrived)
                self.buffered -= len(frames)
                for ev in events:
                    await self.send(ev)
        except WebSocketDisconnect:  # the client left: nothing to tell it
            self.sender.open = False
            return
        except EmoflowError as e:
            self.failed = await self.sender.error(str(e))
        except Exception as e:  # a bug: this stream ends, the others go on
            log.exception("stream failed")
            self.failed = await self.sender.error(f"internal error: {type(e).__name__}", CLOSE_INTERNAL)
        if self.failed is not None:
            self.close_code, self.close_reason = self.failed.code, self.failed.reason
            await self.sender.close(self.close_code, self.close_reason)  # the receiver stops too

    async def send(self, ev: Event) -> None:
        if not isinstance(ev, EndEvent) or self.embeddings is None:
            await self.sender.send(ev.to_dict())
            return
        blob = await asyncio.to_thread(_npz, ev)
        d = ev.to_dict()
        d["embeddings"] = {"format": "npz", "bytes": len(blob)}
        await self.sender.send_end(d, blob)


def _npz(ev: EndEvent) -> bytes:
    """The result's ``embeddings.npz``, as ``analyze`` saves it (arrays by name)."""
    buf = io.BytesIO()
    np.savez(buf, **ev.result.embeddings())  # type: ignore[arg-type]
    return buf.getvalue()


__all__ = ["register_stream"]
