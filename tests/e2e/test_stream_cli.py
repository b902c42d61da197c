"""``emoflow stream``: a recording as live audio, in process and to a server's ``/v1/stream``."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli_in_process


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


def test_stream_to_a_server(replica_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real server (uvicorn in a thread) and the CLI client: tone in, windows and end out."""
    import numpy as np
    import soundfile as sf
    import uvicorn
    from fastapi import FastAPI

    from emoflow.pipeline import Pipeline
    from emoflow.service.settings import ServiceSettings
    from emoflow.service.stream import register_stream

    app = FastAPI()
    register_stream(app, Pipeline(replica_config), ServiceSettings(store=tmp_path / "store", token="t0k"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        wav = tmp_path / "tone.wav"
        t = np.arange(int(22050 * 4.4)) / 22050
        sf.write(wav, 0.2 * np.sin(2 * np.pi * 300 * t), 22050)
        url = f"ws://127.0.0.1:{port}/v1/stream"
        r = run_cli_in_process(
            "stream", str(wav), "--url", url, "--token", "t0k", "--out", str(tmp_path / "o")
        )
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert sum(line.startswith("window") for line in lines) == 3 and lines[-1].startswith("end {")
        assert json.loads((tmp_path / "o" / "result.json").read_text())["source"]["duration_s"] == 4.4
        r = run_cli_in_process("stream", str(wav), "--url", url, "--token", "wrong")
        assert r.returncode == 2 and "bearer token" in r.stderr
    finally:
        server.should_exit = True
        thread.join(timeout=10)
