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
