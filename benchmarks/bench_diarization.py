"""Diarisation benchmark: DER, JER (pyannote.metrics), speaker-count accuracy and RTF.

For each backend available here (``ge2e`` always when ``resemblyzer`` is installed;
``pyannote`` when pyannote.audio imports and its model is reachable), on the shared
conversations ``../shared/data/conversations/*.wav`` (truth in ``*.truth.json``):

    python benchmarks/bench_diarization.py [--collar 0.25] [--oracle] [--dir DIR ...] [--json OUT]

``--oracle`` also runs with the true speaker count. ``--nuisance-from DIR`` (a RAVDESS-layout
folder, ``Actor_NN/*.flac``) also runs ``ge2e+nap``: rank-4 nuisance directions learned, at run
time, from the clips of every actor in DIR who is *not* in the conversations (nothing derived
from the data is stored), projected out before clustering. RTF = diarisation seconds / audio seconds,
measured after one warm-up file, with the VAD included (``rtf``) and, separately, with the
speech regions given (``rtf_no_vad``: the pipeline already runs Silero VAD).
``CPU-RTF``: process CPU seconds (all threads) per audio second, with the VAD: what the work
costs, whatever else the machine is doing. A missing backend is skipped with the reason.

``--live``: each conversation streamed through the stream's VAD
(:class:`emoflow.streaming.vad.Endpointer`, 0.6 s end-of-speech silence, chunks of 0.25 s)
and, segment by segment, :class:`emoflow.streaming.speakers.LiveSpeakers` (the audio a
``StreamSession`` gives the recogniser: the segment and 0.3 s around it). DER/JER of the final
result, of the labels as first shown live (each segment's turns as returned when it closed),
the offline GE2E result on the same files for comparison, and the cost per segment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine
from emoflow.audio.io import load_audio
from emoflow.diarization.types import SpeakerTurn
from emoflow.types import TimeSpan

CONVERSATIONS = SHARED / "data" / "conversations"


def load_truth(wav: Path) -> tuple[list[SpeakerTurn], float]:
    d = json.loads(wav.with_name(wav.stem + ".truth.json").read_text())
    turns = [SpeakerTurn(TimeSpan(t["start"], t["end"]), str(t["speaker"])) for t in d["turns"]]
    return turns, float(d.get("duration_s") or 0.0)


def build(backend: str) -> tuple[Any, str | None]:
    """The diarizer, or None and why it is not available here."""
    from emoflow.diarization import make_diarizer
    from emoflow.errors import EmoflowError

    try:
        return make_diarizer(backend), None
    except EmoflowError as e:
        return None, str(e)
    except ImportError as e:  # a broken install of an optional backend
        return None, f"{type(e).__name__}: {e}"


def learn_nuisance(folder: Path, exclude: set[str], out: Path, rank: int = 4) -> Path:
    """Nuisance directions from labelled clips (speaker = ``Actor_NN`` folder), saved to ``out``."""
    import numpy as np

    from emoflow.diarization.clustering import nuisance_directions
    from emoflow.diarization.offline import OfflineDiarizer, OfflineDiarizerConfig

    enc = OfflineDiarizer(OfflineDiarizerConfig.with_nuisance(None))  # the windows the projection runs with
    embs, who = [], []
    actors = sorted(d for d in folder.glob("Actor_*") if f"actor{int(d.name[6:])}" not in exclude)
    for d in actors:
        for f in sorted(d.glob("*.flac")) + sorted(d.glob("*.wav")):
            audio = load_audio(f)
            regions = enc.preprocess_regions(audio, None)
            if not regions:
                continue
            span = TimeSpan(regions[0].start, regions[-1].end)  # the clip less its edge silences
            embs.append(enc.embed_spans(audio, [span])[0])
            who.append(d.name)
    np.save(out, nuisance_directions(np.stack(embs), who, rank))
    print(f"nuisance directions: rank {rank} from {len(embs)} clips of {', '.join(a.name for a in actors)}")
    return out


def run_backend(
    name: str, diarizer: Any, files: list[Path], collar: float, oracle: bool
) -> list[dict[str, Any]]:
    from emoflow.diarization.metrics import DiarizationEvaluator

    rows: list[dict[str, Any]] = []
    modes = [False, True] if oracle else [False]
    audios = {f: load_audio(f) for f in files}
    if files:  # warm-up: first-call costs (thread pools, allocator) are not the steady state
        diarizer(audios[files[0]])
    for use_oracle in modes:
        ev = DiarizationEvaluator(collar=collar)
        ev_wide = DiarizationEvaluator(collar=2 * collar)
        total_audio = total_s = total_s_novad = total_cpu = 0.0
        for f in files:
            audio = audios[f]
            ref, _ = load_truth(f)
            k = len({t.speaker for t in ref}) if use_oracle else None
            t0, c0 = time.perf_counter(), time.process_time()
            hyp = diarizer(audio, num_speakers=k)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            speech = [t.span for t in hyp.turns]
            # the same with speech regions given (the pipeline's VAD output stands in for them)
            t1 = time.perf_counter()
            diarizer(audio, speech or None, num_speakers=k) if speech else None
            dt_novad = time.perf_counter() - t1
            s = ev(ref, list(hyp.turns), audio.duration, uri=f.stem)
            wide = ev_wide(ref, list(hyp.turns), audio.duration, uri=f.stem)
            total_audio += audio.duration
            total_s += dt
            total_cpu += cpu
            total_s_novad += dt_novad
            rows.append(
                {
                    "backend": name,
                    "file": f.stem,
                    "oracle_count": use_oracle,
                    "der": s.der,
                    "der_wide": wide.der,
                    "jer": s.jer,
                    "speakers": f"{s.hypothesis_speakers}/{s.reference_speakers}",
                    "count_ok": s.count_correct,
                    "rtf": dt / audio.duration,
                    "cpu_rtf": cpu / audio.duration,
                    "rtf_no_vad": dt_novad / audio.duration,
                }
            )
        n_right = sum(r["count_ok"] for r in rows if r["oracle_count"] == use_oracle)
        rows.append(
            {
                "backend": name,
                "file": "ALL",
                "oracle_count": use_oracle,
                "der": ev.der,
                "der_wide": ev_wide.der,
                "jer": ev.jer,
                "speakers": f"{n_right}/{len(files)} right",
                "count_ok": all(r["count_ok"] for r in rows if r["oracle_count"] == use_oracle),
                "rtf": total_s / max(total_audio, 1e-9),
                "cpu_rtf": total_cpu / max(total_audio, 1e-9),
                "rtf_no_vad": total_s_novad / max(total_audio, 1e-9),
            }
        )
    return rows


def run_live(
    files: list[Path], collar: float, oracle: bool, own_vad: bool = True, **kwargs: Any
) -> list[dict[str, Any]]:
    """Stream each file segment by segment through LiveSpeakers (see the module docstring)."""
    import numpy as np

    from emoflow import config as cfg
    from emoflow.audio.io import TARGET_RATE
    from emoflow.diarization.metrics import DiarizationEvaluator
    from emoflow.diarization.offline import OfflineDiarizer
    from emoflow.streaming.speakers import LiveSpeakers
    from emoflow.streaming.vad import Endpointer
    from emoflow.types import seconds_to_samples

    diarizer = OfflineDiarizer(device="cpu")
    pad, chunk = cfg.STREAM_SEGMENT_PAD_S, TARGET_RATE // 4
    rows: list[dict[str, Any]] = []
    audios = {f: load_audio(f) for f in files}
    if files:  # warm-up
        diarizer(audios[files[0]])
    for use_oracle in [False, True] if oracle else [False]:
        evs = {k: DiarizationEvaluator(collar=collar) for k in ("offline", "live_first", "live_final")}
        costs: list[float] = []
        total_audio = total_s = 0.0
        changed_total = shown_total = 0.0
        for f in files:
            audio = audios[f]
            ref, _ = load_truth(f)
            k = len({t.speaker for t in ref}) if use_oracle else None
            off = diarizer(audio, num_speakers=k)
            live = LiveSpeakers(diarizer, num_speakers=k, own_vad=own_vad, **kwargs)
            ep = Endpointer(cfg.STREAM_END_SILENCE_S, 28.0)
            first: list[SpeakerTurn] = []
            t_file = 0.0
            x = audio.samples
            pos = 0
            while True:
                last = pos >= len(x)
                segs = ep.finish() if last else ep.feed(x[pos : pos + chunk])
                pos += chunk
                for seg in segs:
                    a = seconds_to_samples(live.audio_start(seg.span), TARGET_RATE)
                    b = min(len(x), seconds_to_samples(seg.span.end + pad, TARGET_RATE))
                    t0 = time.perf_counter()
                    first.extend(live.add(x[a:b], a / TARGET_RATE, list(seg.regions)))
                    dt = time.perf_counter() - t0
                    costs.append(dt)
                    t_file += dt
                if last:
                    break
            final = live.result()
            shown = {(t.start, t.end): t.speaker for t in first}
            now = {(t.start, t.end): t.speaker for t in live.turns()}
            same = sum(e - s for (s, e), sp in shown.items() if now.get((s, e)) == sp)
            changed_total += sum(e - s for s, e in shown) - same
            shown_total += sum(e - s for s, e in shown)
            scores = {
                "offline": evs["offline"](ref, list(off.turns), audio.duration, uri=f.stem),
                "live_first": evs["live_first"](ref, first, audio.duration, uri=f.stem),
                "live_final": evs["live_final"](ref, list(final.turns), audio.duration, uri=f.stem),
            }
            total_audio += audio.duration
            total_s += t_file
            rows.append(
                {
                    "file": f.stem,
                    "oracle_count": use_oracle,
                    **{f"{m}_der": s.der for m, s in scores.items()},
                    **{f"{m}_jer": s.jer for m, s in scores.items()},
                    "speakers": f"{final.num_speakers}/{off.num_speakers}/{len({t.speaker for t in ref})}",
                    "segments": live.segments,
                    "ms_per_segment": 1000 * t_file / max(1, live.segments),
                    "rtf": t_file / audio.duration,
                }
            )
        rows.append(
            {
                "file": "ALL",
                "oracle_count": use_oracle,
                **{f"{m}_der": ev.der for m, ev in evs.items()},
                **{f"{m}_jer": ev.jer for m, ev in evs.items()},
                "speakers": "final/offline/true",
                "segments": len(costs),
                "ms_per_segment": 1000 * float(np.mean(costs)) if costs else 0.0,
                "p95_ms": 1000 * float(np.percentile(costs, 95)) if costs else 0.0,
                "rtf": total_s / max(total_audio, 1e-9),
                "relabelled_share": changed_total / max(shown_total, 1e-9),
            }
        )
    return rows


def print_live(rows: list[dict[str, Any]], collar: float, own_vad: bool) -> None:
    print(f"live (LiveSpeakers, {'own' if own_vad else 'stream'} VAD), collar {collar} s")
    head = (
        f"{'count':7s} {'file':6s} {'DER off':>8s} {'DER 1st':>8s} {'DER fin':>8s} {'JER off':>8s} "
        f"{'JER 1st':>8s} {'JER fin':>8s} {'spk f/o/t':>10s} {'segs':>5s} {'ms/seg':>7s} {'RTF':>6s}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{'true' if r['oracle_count'] else 'estim.':7s} {r['file']:6s} {r['offline_der']:8.3f} "
            f"{r['live_first_der']:8.3f} {r['live_final_der']:8.3f} {r['offline_jer']:8.3f} "
            f"{r['live_first_jer']:8.3f} {r['live_final_jer']:8.3f} {r['speakers']:>10s} {r['segments']:5d} "
            f"{r['ms_per_segment']:7.1f} {r['rtf']:6.3f}"
            + (
                f"  p95 {r['p95_ms']:.1f} ms; speech relabelled since shown: {r['relabelled_share']:.1%}"
                if r["file"] == "ALL"
                else ""
            )
        )


def print_table(rows: list[dict[str, Any]], collar: float) -> None:
    head = (
        f"{'backend':9s} {'count':7s} {'file':10s} {'DER':>6s} {'DER±c':>6s} {'JER':>6s} "
        f"{'speakers':>12s} {'RTF':>6s} {'RTF-VAD':>8s} {'CPU-RTF':>8s}"
    )
    print(f"collar {collar} s (pyannote: total width; DER±c = collar {2 * collar} s, i.e. ±{collar} s)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['backend']:9s} {'true' if r['oracle_count'] else 'estim.':7s} {r['file']:10s} "
            f"{r['der']:6.3f} {r['der_wide']:6.3f} {r['jer']:6.3f} {r['speakers']:>12s} "
            f"{r['rtf']:6.3f} {r['rtf_no_vad']:8.3f} {r['cpu_rtf']:8.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collar", type=float, default=0.25)
    p.add_argument("--oracle", action="store_true", help="also run with the true speaker count")
    p.add_argument(
        "--dir", action="append", type=Path, help="folders of *.wav + *.truth.json (default: shared)"
    )
    p.add_argument("--backend", action="append", choices=["ge2e", "pyannote"], help="default: all")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--nuisance-from", type=Path, help="RAVDESS-layout folder to learn nuisance from")
    p.add_argument("--live", action="store_true", help="stream segment by segment through LiveSpeakers")
    p.add_argument("--stream-vad", action="store_true", help="--live: the stream VAD's regions, not its own")
    args = p.parse_args(argv)
    dirs = args.dir or [CONVERSATIONS]
    files = sorted(f for d in dirs for f in d.glob("*.wav") if f.with_name(f.stem + ".truth.json").exists())
    if not files:
        print(f"no conversations with truth found in {', '.join(map(str, dirs))}; skipped")
        return 0
    print(f"machine: {machine()}")
    try:
        with open("/proc/loadavg") as fh:
            print(f"load average at start: {fh.read().split()[:3]}")
    except OSError:
        pass
    print(f"{len(files)} files, {sum(load_audio(f).duration for f in files):.1f} s of audio")
    if args.live:
        import torch

        torch.set_num_threads(1)
        live_rows = run_live(files, args.collar, args.oracle, own_vad=not args.stream_vad)
        print_live(live_rows, args.collar, not args.stream_vad)
        if args.json:
            args.json.write_text(json.dumps(live_rows, indent=1))
        return 0
    rows: list[dict[str, Any]] = []
    for name in args.backend or ["ge2e", "pyannote"]:
        diarizer, why = build(name)
        if diarizer is None:
            print(f"[{name}] skipped: {why}")
            continue
        rows.extend(run_backend(name, diarizer, files, args.collar, args.oracle))
    if args.nuisance_from:
        import tempfile

        from emoflow.diarization.offline import OfflineDiarizer, OfflineDiarizerConfig

        speakers = {t.speaker for f in files for t in load_truth(f)[0]}
        with tempfile.TemporaryDirectory() as tmp:
            path = learn_nuisance(args.nuisance_from, speakers, Path(tmp) / "nuisance.npy")
            nap = OfflineDiarizer(OfflineDiarizerConfig.with_nuisance(path))
            rows.extend(run_backend("ge2e+nap", nap, files, args.collar, args.oracle))
    if rows:
        print_table(rows, args.collar)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
