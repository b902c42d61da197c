"""``emoflow stream``: a recording streamed as live audio, through an in-process session or to
a server's ``/v1/stream``, its events printed as they come."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from emoflow.cli.common import UsageError, check_out_folder, err, loads_models, output_formats
from emoflow.cli.options import ANALYSIS, pipeline_config, with_options


def _line(ev: dict[str, Any]) -> str:
    kind = ev["type"]
    if kind == "window":
        top = ev.get("top")
        score = ev["scores"].get(top, 0.0) if top else 0.0
        span = f"{ev['start']:8.2f}-{ev['end']:<8.2f}"
        return f"window {ev['index']:>4} {span} {top or '-':<10} {score:.2f}  lag {ev['lag_s']:.2f} s"
    if kind == "sentence":
        rows = []
        for s in ev["sentences"]:
            text_top = s["text_emotion"]["labels"][0] if s["text_emotion"]["labels"] else "-"
            voice = s["audio_emotion"]["labels"][0] if s["audio_emotion"]["labels"] else "-"
            rows.append(
                f"sentence {s['index']:>3} {s['start']:8.2f}-{s['end']:<8.2f} text {text_top:<9} "
                f"voice {voice:<9} {s['text']}"
            )
        return "\n".join(rows) + f"  (lag {ev['lag_s']:.2f} s)"
    if kind == "end":
        return "end " + json.dumps(ev["summary"])
    return f"{kind} " + json.dumps({k: v for k, v in ev.items() if k != "type"})


@loads_models
@with_options("formats", *ANALYSIS)
def stream(
    audio: Annotated[Path, typer.Argument(help="The recording to stream (any format analyze reads).")],
    url: Annotated[
        str | None, typer.Option(help="A server's stream endpoint, e.g. ws://127.0.0.1:8000/v1/stream.")
    ] = None,
    realtime: Annotated[bool, typer.Option(help="Send the audio at real-time pace.")] = False,
    chunk_ms: Annotated[int, typer.Option(help="Audio per chunk, in milliseconds.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Save the final result here, like analyze.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each event as a JSON line.")] = False,
    token: Annotated[
        str | None, typer.Option(envvar="EMOFLOW_TOKEN", help="The server's bearer token (with --url).")
    ] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Stream a recording as live audio and print the voice-emotion windows and the sentences as
    they come (in process, or to a server with --url)."""
    from emoflow.audio.io import load_audio

    formats = output_formats(options.pop("formats"))
    if not 10 <= chunk_ms <= 10_000:
        raise UsageError(f"--chunk-ms must be from 10 to 10000, got {chunk_ms}")
    if url is not None and not url.startswith(("ws://", "wss://")):
        raise UsageError(f"--url {url}: use a ws:// or wss:// address, e.g. ws://127.0.0.1:8000/v1/stream")
    config = pipeline_config(options)
    if out is not None:
        check_out_folder(out)
    rec = load_audio(audio, max_duration=config.max_duration)
    step = max(1, rec.sample_rate * chunk_ms // 1000)
    chunks = [rec.samples[i : i + step] for i in range(0, len(rec.samples), step)]

    def show(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False) if as_json else _line(ev), flush=True)

    if url is None:
        _in_process(config, chunks, rec.sample_rate, realtime, show, out, formats, audio)
    else:
        _remote(url, token, chunks, rec.sample_rate, realtime, show, out)


def _paced(chunks: list[np.ndarray], rate: int, realtime: bool) -> Any:
    t0, sent = time.monotonic(), 0
    for c in chunks:
        if realtime:
            time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        sent += len(c)
        yield c


def _in_process(
    config: Any,
    chunks: list[np.ndarray],
    rate: int,
    realtime: bool,
    show: Any,
    out: Path | None,
    formats: Any,
    audio: Path,
) -> None:
    from emoflow.pipeline import Pipeline
    from emoflow.streaming import StreamSession

    pipeline = Pipeline(config)
    with err.status("loading models"):
        pipeline.load_all()
    session = StreamSession(pipeline, rate, background=True, name=str(audio))
    for c in _paced(chunks, rate, realtime):
        for ev in session.feed(c):
            show(ev.to_dict())
    events = session.finish()
    for ev in events:
        show(ev.to_dict(with_result=False) if ev.type == "end" else ev.to_dict())  # type: ignore[call-arg]
    end = events[-1]
    if out is not None and end.type == "end":
        path = end.result.save(out / audio.stem, formats)  # type: ignore[union-attr]
        err.print(f"saved {path}", markup=False)


def _remote(
    url: str,
    token: str | None,
    chunks: list[np.ndarray],
    rate: int,
    realtime: bool,
    show: Any,
    out: Path | None,
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from emoflow.streaming.protocol import StreamStart, encode_frame

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = connect(url, additional_headers=headers, open_timeout=30, close_timeout=10)
    except (OSError, ConnectionClosed) as e:
        raise UsageError(f"--url {url}: cannot connect ({e})") from e
    failed: list[str] = []
    with ws:
        ws.send(StreamStart(rate, "f32le", 1).to_json())

        def send() -> None:
            try:
                for c in _paced(chunks, rate, realtime):
                    ws.send(encode_frame(c, "f32le"))
                ws.send('{"type": "end"}')
            except ConnectionClosed:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        end = None
        try:
            while True:
                ev = json.loads(ws.recv(timeout=600))
                if ev["type"] == "error":
                    failed.append(ev["message"])
                if ev["type"] == "end":
                    end = ev
                    show({k: v for k, v in ev.items() if k != "result"})
                else:
                    show(ev)
        except ConnectionClosed:
            pass
        except TimeoutError:
            failed.append("no event from the server for 600 s")
        sender.join(timeout=10)
    if out is not None and end is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(end["result"], indent=1) + "\n", encoding="utf-8")
        err.print(f"saved {out / 'result.json'}", markup=False)
    if failed:
        raise UsageError("the server stopped the stream: " + failed[-1])
