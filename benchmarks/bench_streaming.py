"""Live analysis latencies (``emoflow.streaming``): real-time streams of speech through
:class:`~emoflow.streaming.StreamSession`, in process, 100 ms chunks at real-time pace.

* window latency: from the moment a window's last sample is due (stream start + window end)
  to its ``window`` event;
* sentence latency: from the end of a speech region (its last speech sample) to its
  ``sentence`` event (this includes the ``end_silence_s`` the VAD waits, 0.6 s), and from the
  region's closing to the event (the session's own ``lag_s``);
* simultaneous streams: 1, 2, ... streams at once (one thread each, background recogniser) until
  one falls behind (its feed loop more than 1 s late, its window p95 over 1 s or its sentence
  p95 after the region closed over 3 s).

Models: the tiny replicas and the real Whisper tiny.en (``--full``: the full-size emotion2vec
replica for the voice side). Record the machine's load (``uptime``) with the figures.

    python benchmarks/bench_streaming.py [--seconds 40] [--streams 4] [--threads 1] [--full]
        [--asr-backend transformers|faster-whisper] [--asr-context 8] [--timeline exact|pooled]
        [--early-asr 0.35 | -1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import ROOT, SHARED, full_replicas, machine, speech


def ct2_whisper(work: Path) -> Path:
    """Whisper tiny.en converted for CTranslate2 (int8 weights), as a user would with
    ``ct2-transformers-converter --quantization int8 --copy_files tokenizer.json``."""
    from ctranslate2.converters import TransformersConverter

    out = work / "whisper-tiny.en-ct2"
    TransformersConverter(str(SHARED / "models" / "whisper-tiny.en"), copy_files=["tokenizer.json"]).convert(
        str(out), quantization="int8"
    )
    return out


def pipeline(full: bool, backend: str = "transformers", timeline: str = "exact") -> Any:
    from emoflow.config import PipelineConfig, TimelineConfig
    from emoflow.pipeline import Pipeline
    from emoflow.testing.replica_cache import copy_replicas

    work = Path(tempfile.mkdtemp())
    reps = copy_replicas(work, ROOT / ".cache" / "test-replicas", "tiny")
    if full:
        reps["emotion2vec"] = full_replicas()["emotion2vec"]
    asr = SHARED / "models" / "whisper-tiny.en" if backend == "transformers" else ct2_whisper(work)
    p = Pipeline(
        PipelineConfig(
            asr_model=str(asr),
            asr_backend=backend,
            audio_model=str(reps["emotion2vec"]),
            text_model=str(reps["text-emotion"]),
            encoder_model=str(reps["distilbert"]),
            # pooled live: chunks as long as a window (3 s), the shortest wait for a window
            timeline=TimelineConfig(mode="pooled", chunk_s=3.0) if timeline == "pooled" else TimelineConfig(),
        )
    )
    p.load_all()
    return p


def one_stream(
    p: Any, audio: np.ndarray, out: dict[str, Any], start: float, context: float, early: float | None = 0.35
) -> None:
    from emoflow.streaming import StreamSession

    s = StreamSession(p, 16000, background=True, asr_context_s=context, early_asr_s=early)
    step, late, window_lat, sentence_lat, closed_lag = 1600, 0.0, [], [], []
    t0 = start

    def take(events: list[Any]) -> None:
        now = time.monotonic()
        for e in events:
            if e.type == "window":
                window_lat.append(now - (t0 + e.span.end))
            elif e.type == "sentence":
                sentence_lat.append(now - (t0 + e.region.end))
                closed_lag.append(e.lag_s)

    for i in range(0, len(audio), step):
        due = t0 + (i + step) / 16000  # the chunk's last sample is "spoken" at this moment
        time.sleep(max(0.0, due - time.monotonic()))
        late = max(late, time.monotonic() - due)
        take(s.feed(audio[i : i + step], arrived=due))
    take(s.poll())
    ends = s.finish()
    take(ends)
    out.update(window=window_lat, sentence=sentence_lat, closed=closed_lag, late=late)
    out.update(early=ends[-1].summary["early_asr"])


def warm_up(p: Any) -> float:
    """One short stream through every model first (a server's first stream pays this once):
    seconds it took. The figures below are then the steady state."""
    from emoflow.streaming import StreamSession

    t0 = time.perf_counter()
    s = StreamSession(p, 16000)
    audio = speech(6.0)
    for i in range(0, len(audio), 1600):
        s.feed(audio[i : i + 1600])
    s.finish()
    return round(time.perf_counter() - t0, 3)


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def run(p: Any, n: int, seconds: float, context: float, early: float | None) -> list[dict[str, Any]]:
    audio = speech(seconds)
    outs: list[dict[str, Any]] = [{} for _ in range(n)]
    start = time.monotonic() + 0.5
    threads = [
        threading.Thread(target=one_stream, args=(p, audio, outs[k], start, context, early)) for k in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds * 10 + 120)
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--streams", type=int, default=4, help="the most simultaneous streams to try")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--full", action="store_true", help="the full-size emotion2vec replica")
    ap.add_argument("--asr-context", type=float, default=8.0, help="StreamSession's asr_context_s")
    ap.add_argument(
        "--asr-backend",
        choices=("transformers", "faster-whisper"),
        default="transformers",
        help="Whisper tiny.en through transformers, or converted for CTranslate2 (int8)",
    )
    ap.add_argument(
        "--timeline",
        choices=("exact", "pooled"),
        default="exact",
        help="live windows: each through the voice model alone, or pooled from 3 s chunks",
    )
    ap.add_argument(
        "--early-asr",
        type=float,
        default=0.35,
        help="StreamSession's early_asr_s (a negative value: off, recognise once a region closed)",
    )
    args = ap.parse_args()
    early = None if args.early_asr < 0 else args.early_asr
    torch.set_num_threads(args.threads)
    p = pipeline(args.full, args.asr_backend, args.timeline)
    warm = warm_up(p)
    report: dict[str, Any] = {
        "machine": machine(),
        "load": os.getloadavg(),
        "voice model": "emotion2vec full-size replica" if args.full else "tiny replica",
        "seconds": args.seconds,
        "asr_context_s": args.asr_context,
        "asr_backend": args.asr_backend,
        "early_asr_s": early,
        "timeline": args.timeline,
        "torch_threads": args.threads,
        "warm_up_s": warm,
        "runs": [],
    }
    for n in range(1, args.streams + 1):
        outs = run(p, n, args.seconds, args.asr_context, early)
        win = [x for o in outs for x in o.get("window", [])]
        sen = [x for o in outs for x in o.get("sentence", [])]
        closed = [x for o in outs for x in o.get("closed", [])]
        late = max(o.get("late", float("inf")) for o in outs)
        row = {
            "streams": n,
            "window_p50_s": pct(win, 50),
            "window_p95_s": pct(win, 95),
            "sentence_from_speech_end_p50_s": pct(sen, 50),
            "sentence_from_speech_end_p95_s": pct(sen, 95),
            "sentence_after_close_p95_s": pct(closed, 95),
            "feed_late_max_s": round(late, 3),
            "early_asr": [o.get("early") for o in outs],
        }
        row["keeps_up"] = (
            late <= 1.0
            and (row["window_p95_s"] or 0) <= 1.0
            and (row["sentence_after_close_p95_s"] or 0) <= 3.0
        )
        report["runs"].append(row)
        print(json.dumps(row), flush=True)
        if not row["keeps_up"]:
            break
    report["sustained_streams"] = max([r["streams"] for r in report["runs"] if r["keeps_up"]], default=0)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
