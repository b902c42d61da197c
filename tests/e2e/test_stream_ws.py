"""``/v1/stream``: the live analysis over a WebSocket (fastapi's TestClient), its limits (the
server's settings, as ``emoflow serve`` sets them), its token, the embeddings after the end,
and its answers to malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from emoflow.streaming.protocol import StreamStart, encode_frame


@pytest.fixture(scope="module")
def pipeline(replica_config):
    from emoflow.pipeline import Pipeline

    return Pipeline(replica_config)


def make_client(pipeline, tmp_path: Path, **settings: Any) -> TestClient:  # type: ignore[no-untyped-def]
    from emoflow.service.settings import ServiceSettings
    from emoflow.service.stream import register_stream

    app = FastAPI()
    register_stream(app, pipeline, ServiceSettings(store=tmp_path / "store", **settings))
    return TestClient(app, base_url="http://localhost")


def until_closed(ws) -> tuple[list[dict[str, Any]], int]:  # type: ignore[no-untyped-def]
    """Every event until the server closes: (events, close code)."""
    events: list[dict[str, Any]] = []
    while True:
        m = ws.receive()
        if m["type"] == "websocket.close":
            return events, m.get("code", 1000)
        events.append(json.loads(m["text"]))


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.slow
def test_stream_over_websocket(pipeline, shared: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 44.1 kHz stereo recording as 16-bit frames of varied sizes: windows as analyze's
    timeline, its two sentences, then the end with the whole result; close 1000."""
    import soundfile as sf

    src = shared / "audio" / "speech" / "stereo_44k.wav"
    offline = pipeline.analyze(src)
    frames, rate = sf.read(src, dtype="float32")
    with make_client(pipeline, tmp_path) as c, c.websocket_connect("/v1/stream") as ws:
        ws.send_text(StreamStart(rate, "pcm_s16le", 2, {"top_k": 2}).to_json())
        i, sizes = 0, [441, 4410, 17, 9000, 22050]
        while i < len(frames):
            n = sizes[i % len(sizes)]
            ws.send_bytes(encode_frame(frames[i : i + n], "pcm_s16le"))
            i += n
        ws.send_text('{"type": "end"}')
        events, code = until_closed(ws)
    assert code == 1000
    assert events[0]["type"] == "started" and events[0]["window_s"] == 3.0
    windows = [e for e in events if e["type"] == "window"]
    assert [(w["start"], w["end"]) for w in windows] == [(s.start, s.end) for s in offline.timeline.spans]
    got = np.array([list(w["scores"].values()) for w in windows])
    assert np.abs(got - offline.timeline.scores).max() < 2e-3  # 16-bit frames: quantised audio
    sentences = [s for e in events if e["type"] == "sentence" for s in e["sentences"]]
    assert len(sentences) == len(offline.sentences) == 2
    assert all(len(s["sequence"].split("__")) == 2 for s in sentences)  # the request's top_k
    end = events[-1]
    assert end["type"] == "end" and end["summary"]["sentences"] == 2
    assert end["result"]["source"]["sample_rate"] == rate and len(end["result"]["sentences"]) == 2


@pytest.mark.parametrize(
    ("start", "frame", "said"),
    [
        ('{"type": "start", "sample_rate": 16000, "encoding": "opus"}', None, "unknown encoding 'opus'"),
        ('{"type": "start", "sample_rate": 16000}', b"\x01\x02\x03", "3 bytes is not a whole number"),
        ('{"type": "start", "sample_rate": 16000}', "hello", "expected binary audio frames"),
        (
            '{"type": "start", "sample_rate": 16000, "settings": {"asr_model": "x"}}',
            None,
            "unsupported settings",
        ),
        ("[1, 2", None, "JSON start message"),
        (
            '{"type": "start", "sample_rate": 16000, "settings": {"speakers": 2}}',
            None,
            "speakers needs diarize: true",
        ),
    ],
)
def test_malformed_messages_get_an_error_and_1008(pipeline, tmp_path: Path, start, frame, said) -> None:  # type: ignore[no-untyped-def]
    with make_client(pipeline, tmp_path) as c:
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text(start)
            if frame is not None:
                assert ws.receive_json()["type"] == "started"
                ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
            events, code = until_closed(ws)
        assert code == 1008 and events[-1]["type"] == "error" and said in events[-1]["message"]
        # the server goes on: the next stream is served
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text('{"type": "start", "sample_rate": 16000}')
            assert ws.receive_json()["type"] == "started"


def test_limits(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The server's settings: max_streams 1 (a second stream: 1013), 1.5 s per stream (an error,
    then the end of what came, 1008), a 0.5 s idle timeout (an error, 1008), 3 s of buffer."""
    limits = {
        "max_streams": 1,
        "max_stream_duration_s": 1.5,
        "stream_idle_timeout_s": 0.5,
        "max_stream_buffer_s": 3.0,
    }
    start = '{"type": "start", "sample_rate": 16000, "encoding": "f32le"}'
    with make_client(pipeline, tmp_path, **limits) as c:
        with c.websocket_connect("/v1/stream") as first:
            first.send_text(start)
            assert first.receive_json()["type"] == "started"
            with c.websocket_connect("/v1/stream") as second:  # over max_streams: try again later
                assert until_closed(second)[1] == 1013
            first.send_bytes(tone(1.2).tobytes())
            first.send_bytes(tone(0.7).tobytes())  # over the 1.5 s of a stream: the end of 1.5 s
            events, code = until_closed(first)
        assert code == 1008
        assert any(e["type"] == "error" and "limit of 1.5 s" in e["message"] for e in events)
        assert events[-1]["type"] == "end" and events[-1]["summary"]["duration_s"] == 1.5
        with c.websocket_connect("/v1/stream") as ws:  # silent client: the idle timeout
            ws.send_text(start)
            ws.receive_json()
            events, code = until_closed(ws)
        assert code == 1008 and "no message for 0.5 s" in events[-1]["message"]
    with make_client(pipeline, tmp_path, max_stream_buffer_s=3.0) as c:
        with c.websocket_connect("/v1/stream") as ws:  # more queued audio than max_buffered_s
            ws.send_text(start.replace("f32le", "pcm_s16le"))
            ws.receive_json()
            ws.send_bytes(encode_frame(tone(3.5), "pcm_s16le"))
            events, code = until_closed(ws)
        assert code == 1008 and "waiting for the models" in events[-1]["message"]


def test_token(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start = {"type": "start", "sample_rate": 16000}
    with make_client(pipeline, tmp_path, token="s3cret") as c:
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps(start))
            events, code = until_closed(ws)
        assert code == 1008 and "bearer token" in events[-1]["message"]
        with c.websocket_connect("/v1/stream", headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send_text(json.dumps(start))
            assert ws.receive_json()["type"] == "started"
        with c.websocket_connect("/v1/stream") as ws:  # a browser: the token in the start message
            ws.send_text(json.dumps({**start, "token": "s3cret"}))
            assert ws.receive_json()["type"] == "started"
            ws.send_bytes(encode_frame(tone(3.2), "pcm_s16le"))
            ws.send_text('{"type": "end"}')
            events, code = until_closed(ws)
        assert code == 1000 and [e["type"] for e in events].count("window") == 2
        assert events[-1]["type"] == "end"


def test_start_timeout_and_the_default_length_limit(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No start message within stream_start_timeout_s: an error and 1008. Without
    max_stream_duration_s, a stream is held to the upload limit (max_duration_s here) and ended
    there with its end event, not failed."""
    with make_client(pipeline, tmp_path, stream_start_timeout_s=0.3, max_duration_s=1.2) as c:
        with c.websocket_connect("/v1/stream") as ws:
            events, code = until_closed(ws)
        assert code == 1008 and events == [{"type": "error", "message": "no start message within 0.3 s"}]
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text('{"type": "start", "sample_rate": 22050, "encoding": "f32le"}')
            assert ws.receive_json()["type"] == "started"
            ws.send_bytes(tone(2.1, 22050).tobytes())
            events, code = until_closed(ws)
        assert code == 1008 and any("limit of 1.2 s" in e.get("message", "") for e in events)
        assert events[-1]["type"] == "end" and events[-1]["summary"]["duration_s"] == 1.2


def test_the_embeddings_follow_the_end_when_asked(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``?embeddings=npz``: after the end event, one binary message, the result's
    embeddings.npz; with them the client rebuilds the whole Result."""
    import io

    from emoflow.results import Result

    with make_client(pipeline, tmp_path) as c:
        with c.websocket_connect("/v1/stream?embeddings=npz") as ws:
            ws.send_text('{"type": "start", "sample_rate": 16000}')
            assert ws.receive_json()["type"] == "started"
            ws.send_bytes(encode_frame(tone(4.3), "pcm_s16le"))
            ws.send_text('{"type": "end"}')
            msgs = []
            while (m := ws.receive())["type"] != "websocket.close":
                msgs.append(m)
        assert m.get("code", 1000) == 1000
        end = json.loads(msgs[-2]["text"])
        blob = msgs[-1]["bytes"]
        assert end["type"] == "end" and end["embeddings"] == {"format": "npz", "bytes": len(blob)}
        with np.load(io.BytesIO(blob)) as z:
            arrays = {k: z[k] for k in z.files}
        shapes = end["result"]["embeddings"]["arrays"]
        assert {k: list(v.shape) for k, v in arrays.items()} == shapes and shapes["timeline"][0] == 3
        result = Result.from_dict(end["result"], arrays)
        assert result.to_dict() == end["result"]
        with c.websocket_connect("/v1/stream") as ws:  # not asked: no binary message
            ws.send_text('{"type": "start", "sample_rate": 16000}')
            ws.receive_json()
            ws.send_bytes(encode_frame(tone(1.1), "pcm_s16le"))
            ws.send_text('{"type": "end"}')
            events, code = until_closed(ws)
        assert code == 1000 and events[-1]["type"] == "end" and "embeddings" not in events[-1]
        with c.websocket_connect("/v1/stream?embeddings=pickle") as ws:
            events, code = until_closed(ws)
        assert code == 1008 and "use embeddings=npz" in events[-1]["message"]
