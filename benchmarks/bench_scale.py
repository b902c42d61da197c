"""Scale: the design document's method vs emoflow on the same models, batch throughput local vs
Ray, and peak memory for long recordings.

    python benchmarks/bench_scale.py compare [--seconds 60]     # full-size replicas, same transcript
    python benchmarks/bench_scale.py throughput [--files 20]    # tiny replicas + Whisper tiny.en
    python benchmarks/bench_scale.py memory [--minutes 10 60]   # tiny replicas + Whisper tiny.en

`memory` runs each length in a fresh process and reports peak RSS minus the RSS after the
models were loaded and warmed up, i.e. what the analysis itself holds at its peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from _common import SHARED, full_replicas, machine, speech

WHISPER = SHARED / "models" / "whisper-tiny.en"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def design_document(models, audio_path: Path, transcript: dict) -> float:
    """The seed notebook's steps on the same model objects: full-file emotion2vec, a temp wav +
    generate per 3 s window, the endswith sentence loop, one classifier call and one DistilBERT
    call per sentence."""
    import torch
    from transformers import pipeline as hf_pipeline

    from bench_alignment import design_document_method
    from bench_backends import design_document_timeline

    e2v, clf, enc = models
    t0 = time.perf_counter()
    e2v.automodel.generate(str(audio_path), granularity="utterance", extract_embedding=True)
    x, sr = sf.read(audio_path, dtype="float32")
    design_document_timeline(e2v.automodel, x, sr)
    from emoflow.asr.transcript_io import transcript_from_json
    from emoflow.text.sentences import split_text
    from emoflow.types import join_words

    words = list(transcript_from_json(transcript).words)
    sentences = split_text(join_words(words))
    design_document_method(words, sentences)
    pipe = hf_pipeline(
        "text-classification", model=clf.model, tokenizer=clf.tokenizer, top_k=None, device="cpu"
    )
    for s in sentences:
        scores = sorted(pipe([s])[0], key=lambda d: -d["score"])
        seq = "__".join(d["label"] for d in scores[:3])
        with torch.no_grad():
            enc.model(**enc.tokenizer(seq, return_tensors="pt")).last_hidden_state[:, 0, :]
    return time.perf_counter() - t0


def compare(seconds: float) -> None:
    from emoflow.config import PipelineConfig, TimelineConfig
    from emoflow.models import ModelSpec
    from emoflow.pipeline import Pipeline, Work
    from emoflow.text.emotion import TextEmotionClassifier

    paths = full_replicas()
    print("machine:", machine())
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "speech.wav"
        sf.write(wav, speech(seconds), 16000)
        cfg = PipelineConfig(
            asr_model=str(WHISPER),
            audio_model=str(paths["emotion2vec"]),
            text_model=str(paths["text-emotion"]),
            encoder_model=str(paths["distilbert"]),
        )
        pipe = Pipeline(cfg)
        pipe.load_all()
        tr = pipe.transcriber(pipe.stage_decode(Work(str(wav))).need_audio())
        tjson = Path(d) / "t.json"
        tjson.write_text(json.dumps(tr.to_hf_chunks()))
        fp32 = TextEmotionClassifier(ModelSpec(str(paths["text-emotion"]), dtype="float32"))
        pipe.analyze(wav, transcript=tjson)  # warm-up
        t_seed = design_document((pipe.audio_encoder, fp32, pipe.sequence_embedder), wav, tr.to_hf_chunks())
        rows = [("design document", t_seed)]
        for mode in ("exact", "pooled"):
            p2 = pipe.derive(replace(cfg, timeline=TimelineConfig(mode=mode)))
            t0 = time.perf_counter()
            p2.analyze(wav, transcript=tjson)
            rows.append((f"emoflow ({mode} timeline)", time.perf_counter() - t0))
    print(f"{seconds:.0f} s of speech, same precomputed transcript, full-size replicas:")
    for name, t in rows:
        print(f"  {name:28s} {t:7.2f} s  RTF {t / seconds:.3f}  -> {t_seed / t:.2f}x")
    print(
        "  (emoflow also does what the design document does not: VAD, boundary refinement, the final partial "
        "window, per-sentence emotion2vec)"
    )


def throughput(n_files: int) -> None:
    from emoflow.batch.local import discover, run_batch
    from emoflow.batch.ray import run_batch_ray
    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline
    from emoflow.testing.replicas import build_all

    print("machine:", machine())
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        reps = build_all(root / "models", "tiny")
        src = SHARED / "audio" / "speech" / "three_moods.wav"
        (root / "in").mkdir()
        for i in range(n_files):
            shutil.copy(src, root / "in" / f"f{i:02d}.wav")
        cfg = PipelineConfig(
            asr_model=str(WHISPER),
            audio_model=str(reps["emotion2vec"]),
            text_model=str(reps["text-emotion"]),
            encoder_model=str(reps["distilbert"]),
        )
        items = discover(root / "in")
        audio_s = n_files * sf.info(str(src)).duration
        t0 = time.perf_counter()
        pipe = Pipeline(cfg)
        pipe.load_all()
        t_load = time.perf_counter() - t0
        s_local = run_batch(items, root / "local", pipe, formats=["json", "csv"])
        t_local = s_local.seconds + t_load
        s_ray = run_batch_ray(items, root / "ray", cfg, formats=["json", "csv"])
        print(f"{n_files} files x {audio_s / n_files:.1f} s (tiny replicas, Whisper tiny.en for ASR):")
        print(
            f"  local: {t_local:6.1f} s incl. {t_load:.1f} s model load -> {n_files / t_local:.2f} files/s, "
            f"{audio_s / t_local:.1f} s audio/s"
        )
        print(
            f"  ray  : {s_ray.seconds:6.1f} s incl. Ray start and per-actor model loads -> "
            f"{n_files / s_ray.seconds:.2f} files/s ({t_local / s_ray.seconds:.2f}x local)"
        )


def memory_one(minutes: float) -> None:
    """One length, in this process: prints a JSON line."""
    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline
    from emoflow.testing.replicas import build_all

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        reps = build_all(root / "models", "tiny")
        cfg = PipelineConfig(
            asr_model=str(WHISPER),
            audio_model=str(reps["emotion2vec"]),
            text_model=str(reps["text-emotion"]),
            encoder_model=str(reps["distilbert"]),
        )
        wav = root / "long.flac"
        # write the long file block by block (never holding it in this process)
        block = speech(60.0)
        with sf.SoundFile(wav, "w", 16000, 1, subtype="PCM_16") as f:
            for _ in range(int(minutes)):
                f.write(block)
        del block
        warm = root / "warm.wav"
        sf.write(warm, speech(5.0), 16000)
        pipe = Pipeline(cfg)
        pipe.load_all()
        pipe.analyze(warm).save(root / "warm_out")
        base = rss_mb()
        base_peak = peak_mb()
        t0 = time.perf_counter()
        result = pipe.analyze(wav)
        result.save(root / "out")
        dt = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "minutes": minutes,
                    "baseline_rss_mb": round(base, 1),
                    "peak_rss_mb": round(peak_mb(), 1),
                    "peak_beyond_models_mb": round(peak_mb() - base, 1),
                    "warm_peak_mb": round(base_peak, 1),
                    "seconds": round(dt, 1),
                    "sentences": len(result.sentences),
                    "windows": len(result.timeline.spans),
                    "timings": result.timings,
                }
            )
        )


def memory(minutes_list: list[float]) -> None:
    print("machine:", machine())
    for m in minutes_list:
        out = subprocess.run(
            [sys.executable, __file__, "_memory_one", str(m)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        )
        line = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if not line:
            print(f"{m} min: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(line[-1])
        t = r["timings"]
        print(
            f"{m:4.0f} min: peak RSS {r['peak_rss_mb']:.0f} MB, after model load "
            f"{r['baseline_rss_mb']:.0f} MB -> "
            f"{r['peak_beyond_models_mb']:.0f} MB beyond the models; {r['seconds']:.0f} s "
            f"(asr {t['asr']:.0f} s, vad {t['vad']:.0f} s, audio emotion {t['audio_emotion']:.0f} s); "
            f"{r['sentences']} sentences, {r['windows']} windows"
        )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_memory_one":
        memory_one(float(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["compare", "throughput", "memory"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    a = ap.parse_args()
    if not WHISPER.exists():
        raise SystemExit("needs ../shared/models/whisper-tiny.en")
    np.random.seed(0)
    {
        "compare": lambda: compare(a.seconds),
        "throughput": lambda: throughput(a.files),
        "memory": lambda: memory(a.minutes),
    }[a.what]()


if __name__ == "__main__":
    main()
