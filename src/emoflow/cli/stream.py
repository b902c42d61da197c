"""``emoflow stream``: a recording streamed as live audio, through an in-process session or to
a server's ``/v1/stream``, its events printed as they come.

``--out DIR`` saves the final result as ``analyze`` does (``DIR/<recording's stem>/``, the
``--format`` files, written atomically) either way: from a server, the ``end`` event's result
JSON and the embeddings it sends after it (``?embeddings=npz``) make the :class:`Result`
again, and the recording this client streamed gives it its audio (for the report's player).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from emoflow.cli.common import UsageError, check_out_folder, err, loads_models, output_formats
from emoflow.cli.options import ANALYSIS, pipeline_config, with_options

if TYPE_CHECKING:
    from emoflow.results import Result

MAX_MESSAGE = 2**30  # bytes: the largest message taken from a server (websockets' default: 1 MiB)
EVENT_TIMEOUT_S = 600.0  # no event for this long: the server is gone
# without --realtime: audio sent ahead of the server's latest window (its buffer holds 30 s)
AHEAD_S = 10.0


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
            fused = f"fused {s['fused']['labels'][0]:<9} " if s.get("fused", {}).get("labels") else ""
            who = f"{s['speaker']}: " if s.get("speaker") else ""
            rows.append(
                f"sentence {s['index']:>3} {s['start']:8.2f}-{s['end']:<8.2f} text {text_top:<9} "
                f"voice {voice:<9} {fused}{who}{s['text']}"
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
        from emoflow.export.writers import check_replaceable
        from emoflow.pipeline import output_dir_for

        check_out_folder(out)
        check_replaceable(output_dir_for(out, audio))  # a user's own folder: refused before any work
    rec = load_audio(audio, max_duration=config.max_duration)
    step = max(1, rec.sample_rate * chunk_ms // 1000)
    chunks = [rec.samples[i : i + step] for i in range(0, len(rec.samples), step)]

    def show(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False) if as_json else _line(ev), flush=True)

    if url is None:
        _in_process(config, chunks, rec.sample_rate, realtime, show, out, formats, audio)
    else:
        end, blob, failure = _remote(url, token, chunks, rec.sample_rate, realtime, show, out is not None)
        if out is not None and end is not None:  # also what came before the server stopped it
            _save(_result_of(end, blob), rec.samples, out, audio, formats)
        if failure is not None:
            raise UsageError(f"the server stopped the stream: {failure}")


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
    from emoflow.streaming.events import EndEvent

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
    if out is not None and isinstance(end, EndEvent):
        from emoflow.pipeline import output_dir_for

        path = end.result.save(output_dir_for(out, audio), formats)
        err.print(f"saved {path}", markup=False)


def _remote(
    url: str,
    token: str | None,
    chunks: list[np.ndarray],
    rate: int,
    realtime: bool,
    show: Any,
    embeddings: bool,
) -> tuple[dict[str, Any] | None, bytes | None, str | None]:
    """Stream ``chunks`` to the server at ``url``, showing its events: its ``end`` event (None:
    none came), the embeddings sent after it (asked for with ``embeddings``) and why the server
    stopped the stream (None: it did not)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from emoflow.streaming.protocol import StreamStart, encode_frame

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = connect(
            _with_embeddings(url) if embeddings else url,
            additional_headers=headers,
            open_timeout=30,
            close_timeout=10,
            max_size=MAX_MESSAGE,  # the end event holds the whole result, its embeddings follow
        )
    except (OSError, ConnectionClosed) as e:
        raise UsageError(f"--url {url}: cannot connect ({e})") from e
    failed: list[str] = []
    end: dict[str, Any] | None = None
    blob: bytes | None = None
    # without --realtime the file goes as fast as the server takes it: at most ``ahead`` seconds
    # beyond the end of its latest window (the audio it has analysed), so its buffer never fills
    progress = {"done_s": 0.0, "ahead_s": AHEAD_S, "started": 0.0}
    moved, stop = threading.Condition(), threading.Event()

    def advance(ev: dict[str, Any]) -> None:
        with moved:
            if ev["type"] == "started":
                # the next window needs this much beyond the latest (pooled: its chunk and context)
                step = ev["hop_s"] + (ev.get("chunk_s", 8.0) + 0.5 if ev.get("timeline") == "pooled" else 0.0)
                least = max(ev["window_s"], step) + 0.5
                room = 0.8 * ev.get("max_buffered_s", 30.0)  # within the server's buffer for queued audio
                progress["ahead_s"] = max(least, min(AHEAD_S, room))
                progress["started"] = 1.0
            elif ev["type"] == "window":
                progress["done_s"] = max(progress["done_s"], ev["end"])
            moved.notify_all()

    def wait_for_server(sent_s: float) -> None:
        with moved:
            moved.wait_for(
                lambda: (
                    stop.is_set()
                    or (progress["started"] and sent_s - progress["done_s"] <= progress["ahead_s"])
                ),
                timeout=EVENT_TIMEOUT_S,
            )

    with ws:

        def send() -> None:
            try:  # a server that refuses the stream (1013: too many) may close before the start
                ws.send(StreamStart(rate, "f32le", 1).to_json())
                sent = 0
                for c in _paced(chunks, rate, realtime):
                    if not realtime:
                        wait_for_server(sent / rate)
                    if stop.is_set():
                        return
                    ws.send(encode_frame(c, "f32le"))
                    sent += len(c)
                ws.send('{"type": "end"}')
            except ConnectionClosed:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while True:
                ev = json.loads(ws.recv(timeout=EVENT_TIMEOUT_S))
                if ev["type"] == "error":
                    failed.append(ev["message"])
                if ev["type"] == "end":
                    end = ev
                    show({k: v for k, v in ev.items() if k not in ("result", "embeddings")})
                    if ev.get("embeddings"):
                        data = ws.recv(timeout=EVENT_TIMEOUT_S)
                        blob = data if isinstance(data, bytes) else None
                else:
                    advance(ev)
                    show(ev)
        except ConnectionClosed as e:
            if end is None and not failed:  # closed without a word, e.g. 1013: too many streams
                code = e.rcvd.code if e.rcvd is not None else 1006
                reason = e.rcvd.reason if e.rcvd is not None and e.rcvd.reason else "no reason given"
                failed.append(f"{reason} (close code {code}, before the end of the stream)")
        except TimeoutError:
            failed.append(f"no event from the server for {EVENT_TIMEOUT_S:g} s")
        finally:
            with moved:
                stop.set()
                moved.notify_all()
        sender.join(timeout=10)
    return end, blob, failed[-1] if failed else None


def _with_embeddings(url: str) -> str:
    """``url`` asking for the embeddings after the ``end`` event (``?embeddings=npz``)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "embeddings"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("embeddings", "npz")])))


def _result_of(end: dict[str, Any], blob: bytes | None) -> Result:
    """The :class:`Result` of a server's ``end`` event and the embeddings sent after it;
    :class:`InputError` when they are not a whole result of this emoflow's schema."""
    import io
    import zipfile

    from emoflow.errors import InputError
    from emoflow.results import Result
    from emoflow.types import SCHEMA_VERSION

    data = end.get("result")
    if not isinstance(data, dict):
        raise InputError("the server's end event holds no result; nothing was saved")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(
            f"the server's result has schema {version!r}, this emoflow writes {SCHEMA_VERSION}; "
            "use the same emoflow version on both sides (nothing was saved)"
        )
    if blob is None:
        raise InputError(
            "the server sent no embeddings after its end event (a server without ?embeddings=npz); "
            "nothing was saved"
        )
    try:
        with np.load(io.BytesIO(blob)) as z:
            arrays = {k: z[k] for k in z.files}
        return Result.from_dict(data, arrays)
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise InputError(
            f"the server's result could not be read ({type(e).__name__}: {e}); nothing was saved"
        ) from None


def _save(result: Result, samples: np.ndarray, out: Path, audio: Path, formats: Any) -> None:
    """Save a server's ``result`` as ``analyze`` would, with the audio this client streamed
    (the 16 kHz mono samples the server was sent, up to the duration it analysed)."""
    from dataclasses import replace

    from emoflow.audio.io import TARGET_RATE
    from emoflow.pipeline import output_dir_for

    n = round(result.source.duration_s * TARGET_RATE)
    path = replace(result, audio_samples=samples[:n]).save(output_dir_for(out, audio), formats)
    err.print(f"saved {path}", markup=False)
