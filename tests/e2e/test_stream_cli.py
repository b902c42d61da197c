"""``emoflow stream``: a recording as live audio, in process and to a server's ``/v1/stream``."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import need_shared, run_cli_in_process


@pytest.fixture(scope="module", autouse=True)
def stream_command() -> None:
    """The command as the CLI registers it (added here while cli/__init__ does not list it yet)."""
    from emoflow import cli
    from emoflow.cli.stream import stream

    if not any(
        c.name == "stream" or getattr(c.callback, "__name__", "") == "stream"
        for c in cli.app.registered_commands
    ):
        cli.app.command()(stream)


@pytest.mark.slow
def test_stream_in_process_prints_events_and_saves(replica_args, shared: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = shared / "audio" / "speech" / "stereo_44k.wav"
    r = run_cli_in_process(
        "stream", str(src), "--json", "--chunk-ms", "70", "--out", str(tmp_path), *replica_args
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events]
    assert kinds.count("window") == 4 and kinds.count("sentence") >= 1 and kinds[-1] == "end"
    assert "result" not in events[-1] and events[-1]["summary"]["sentences"] == 2
    saved = json.loads((tmp_path / "stereo_44k" / "result.json").read_text(encoding="utf-8"))
    assert len(saved["sentences"]) == 2 and len(saved["timeline"]["windows"]) == 4


def test_stream_bad_options(replica_args, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    r = run_cli_in_process("stream", str(wav), "--url", "http://x", *replica_args)
    assert r.returncode == 2 and "use a ws:// or wss:// address" in r.stderr
    r = run_cli_in_process("stream", str(wav), "--chunk-ms", "1", *replica_args)
    assert r.returncode == 2 and "--chunk-ms" in r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(replica_config, tmp_path: Path, **settings: Any) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A real server (uvicorn in a thread) with ``/v1/stream``: its URL; stopped on exit."""
    import uvicorn
    from fastapi import FastAPI

    from emoflow.pipeline import Pipeline
    from emoflow.service.settings import ServiceSettings
    from emoflow.service.stream import register_stream

    app = FastAPI()
    register_stream(app, Pipeline(replica_config), ServiceSettings(store=tmp_path / "store", **settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 30 s"
    try:
        yield f"ws://127.0.0.1:{port}/v1/stream"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_stream_to_a_server(replica_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real server and the CLI client: tone in, windows and end out, the result saved as
    analyze saves it; a busy server (max_streams 1) and a wrong token: exit 2, nothing saved."""
    import numpy as np
    import soundfile as sf
    from websockets.sync.client import connect

    with serving(replica_config, tmp_path, token="t0k", max_streams=1) as url:
        wav = tmp_path / "tone.wav"
        t = np.arange(int(22050 * 4.4)) / 22050
        sf.write(wav, 0.2 * np.sin(2 * np.pi * 300 * t), 22050)
        out = tmp_path / "o"
        r = run_cli_in_process(
            "stream", str(wav), "--url", url, "--token", "t0k", "--out", str(out), "--format", "json,npz,csv"
        )
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert sum(line.startswith("window") for line in lines) == 3 and lines[-1].startswith("end {")
        assert sorted(p.name for p in out.iterdir()) == ["tone"]
        names = sorted(p.name for p in (out / "tone").iterdir())
        assert names == ["embeddings.npz", "result.json", "sentences.csv", "timeline.csv"]
        assert json.loads((out / "tone" / "result.json").read_text())["source"]["duration_s"] == 4.4
        r = run_cli_in_process(
            "stream", str(wav), "--url", url, "--token", "wrong", "--out", str(tmp_path / "w")
        )
        assert r.returncode == 2 and "bearer token" in r.stderr and not (tmp_path / "w" / "tone").exists()
        with connect(url, additional_headers={"Authorization": "Bearer t0k"}, open_timeout=10) as held:
            held.send('{"type": "start", "sample_rate": 16000}')
            assert json.loads(held.recv(timeout=10))["type"] == "started"
            r = run_cli_in_process("stream", str(wav), "--url", url, "--token", "t0k")
        assert r.returncode == 2 and "try again later (close code 1013" in r.stderr, r.stderr


@pytest.mark.slow
def test_stream_to_a_server_saves_what_analyze_saves(replica_args, replica_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--url --out``: the same files as the in-process ``--out`` (every format, the report with
    the recording's audio), and the same sentences and timeline."""
    src = need_shared("audio", "speech", "stereo_44k.wav")
    local, remote = tmp_path / "local", tmp_path / "remote"
    r = run_cli_in_process("stream", str(src), "--chunk-ms", "130", "--out", str(local), *replica_args)
    assert r.returncode == 0, r.stderr
    with serving(replica_config, tmp_path) as url:
        r = run_cli_in_process("stream", str(src), "--chunk-ms", "130", "--url", url, "--out", str(remote))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in remote.iterdir()) == ["stereo_44k"]
    files = sorted(p.name for p in (local / "stereo_44k").iterdir())
    assert sorted(p.name for p in (remote / "stereo_44k").iterdir()) == files
    assert {"embeddings.npz", "report.html", "timeline.png", "sentences.csv"} <= set(files)
    a, b = (json.loads((d / "stereo_44k" / "result.json").read_text()) for d in (local, remote))
    assert [s["text"] for s in b["sentences"]] == [s["text"] for s in a["sentences"]] and len(
        a["sentences"]
    ) == 2
    for x, y in zip(a["sentences"], b["sentences"], strict=True):
        assert abs(x["start"] - y["start"]) < 1e-6 and abs(x["end"] - y["end"]) < 1e-6
    wa, wb = a["timeline"]["windows"], b["timeline"]["windows"]
    assert [(w["start"], w["end"]) for w in wb] == [(w["start"], w["end"]) for w in wa] and len(wa) == 4
    assert np.abs(np.array([w["scores"] for w in wa]) - np.array([w["scores"] for w in wb])).max() < 1e-5
    # the report plays the recording: the client attached the audio it streamed
    for d in (local, remote):
        assert "data:audio/ogg;base64," in (d / "stereo_44k" / "report.html").read_text(encoding="utf-8")
    with (
        np.load(remote / "stereo_44k" / "embeddings.npz") as z,
        np.load(local / "stereo_44k" / "embeddings.npz") as y,
    ):
        assert set(z.files) == set(y.files) and np.abs(z["timeline"] - y["timeline"]).max() < 1e-5


def test_a_file_streamed_as_fast_as_the_server_takes_it_never_fills_its_buffer(
    replica_config, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Without --realtime the client sends ahead of the server's latest window by at most what
    the server's buffer holds (advertised in ``started``): 12 s of audio to a server that
    buffers 5 s ends normally (sent all at once it was refused with 1008)."""
    import soundfile as sf

    wav = tmp_path / "tone12.wav"
    t = np.arange(int(16000 * 12.2)) / 16000
    sf.write(wav, 0.2 * np.sin(2 * np.pi * 220 * t), 16000)
    with serving(replica_config, tmp_path, max_stream_buffer_s=5.0) as url:
        r = run_cli_in_process("stream", str(wav), "--url", url, "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    started = events[0]
    assert started["type"] == "started" and started["max_buffered_s"] == 5.0
    assert started["timeline"] == "exact" and started["diarizer"] is None
    assert [e["type"] for e in events].count("window") == 11 and events[-1]["type"] == "end"
