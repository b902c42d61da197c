"""End-to-end real-time factor of `emoflow analyze` and how the time splits across stages.

Full-size random replicas of emotion2vec_plus_large, the distilroberta emotion
classifier and DistilBERT; the real Whisper tiny.en for ASR (from ../shared). Models are
loaded (and warmed up) before timing. "Orchestration" is everything that is not a model
forward pass: decoding, sentence splitting and alignment, boundary refinement,
assembling the result, and (reported separately) writing the output files.

    python benchmarks/bench_pipeline.py [--seconds 60] [--timeline exact|pooled]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from _common import SHARED, full_replicas, machine, speech
from emoflow.config import PipelineConfig
from emoflow.pipeline import MODEL_STAGES, STAGES, Pipeline
from emoflow.speech.emotion2vec import TimelineConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--timeline", choices=["exact", "pooled"], default="exact")
    a = ap.parse_args()
    whisper = SHARED / "models" / "whisper-tiny.en"
    if not whisper.exists():
        raise SystemExit("needs ../shared/models/whisper-tiny.en")
    print("machine:", machine())
    paths = full_replicas()
    config = PipelineConfig(
        asr_model=str(whisper),
        audio_model=str(paths["emotion2vec"]),
        text_model=str(paths["text-emotion"]),
        encoder_model=str(paths["distilbert"]),
        timeline=TimelineConfig(mode=a.timeline),
    )
    pipe = Pipeline(config)
    pipe.load_all()
    with tempfile.TemporaryDirectory() as d:
        warm = Path(d) / "warm.wav"
        sf.write(warm, speech(4.0), 16000)
        pipe.analyze(warm)
        path = Path(d) / "speech.flac"
        sf.write(path, speech(a.seconds), 16000)
        t0 = time.perf_counter()
        result = pipe.analyze(path)
        t_analyze = time.perf_counter() - t0
        t0 = time.perf_counter()
        result.save(Path(d) / "out")
        t_write = time.perf_counter() - t0
    total = t_analyze + t_write
    n_sent, n_win = len(result.sentences), len(result.timeline.spans)
    print(f"{a.seconds:.0f} s of speech, {n_sent} sentences, {n_win} windows ({a.timeline} timeline)")
    print(
        f"end to end: {total:.2f} s = RTF {total / a.seconds:.3f} (analysis {t_analyze:.2f} s + writing "
        f"outputs {t_write:.2f} s)"
    )
    for name in STAGES:
        t = result.timings.get(name, 0.0)
        kind = "model" if name in MODEL_STAGES else "orchestration"
        print(f"  {name:20s} {t:7.3f} s  {t / total:6.1%}  ({kind})")
    print(f"  {'write outputs':20s} {t_write:7.3f} s  {t_write / total:6.1%}  (orchestration)")
    model = sum(result.timings.get(n, 0.0) for n in MODEL_STAGES)
    orch = total - model
    print(
        f"orchestration (everything but model passes): {orch:.2f} s = {orch / total:.1%} of the total "
        f"({(t_analyze - model) / t_analyze:.1%} without writing files)"
    )


if __name__ == "__main__":
    main()
