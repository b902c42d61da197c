"""End-to-end real-time factor of `emoflow analyze` and how the time splits across stages.

Full-size random replicas of emotion2vec_plus_large, the distilroberta emotion
classifier and DistilBERT; the real Whisper tiny.en for ASR (from ../shared). Models are
loaded (and warmed up) before timing. "Orchestration" is everything that is not a model
forward pass: decoding, sentence splitting and alignment, boundary refinement,
assembling the result, and (reported separately) writing the output files.

The voice side (emotion2vec: sentence spans + utterance + timeline) is run three ways in
the same process, the other stages shared: today's method in float32 (every sentence
span through the model again), the new span method in float32, and the default (new
span method, dtype ``auto`` = bfloat16 on CPUs with native bf16). With ``--timeline
exact`` the span method is the same in all three (each span on its own).

    python benchmarks/bench_pipeline.py [--seconds 60] [--timeline exact|pooled]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from _common import SHARED, full_replicas, machine, speech
from emoflow.config import PipelineConfig, TimelineConfig
from emoflow.models import ModelSpec
from emoflow.pipeline import MODEL_STAGES, STAGES, Pipeline
from emoflow.speech.emotion2vec import Emotion2vecEncoder


class SpansExact:
    """Today's method: every sentence span through the model again, whatever the timeline."""

    def __init__(self, encoder: Emotion2vecEncoder) -> None:
        self.encoder = encoder
        self.dim = encoder.dim

    def analyze(self, audio, spans, config):
        return self.encoder.analyze(audio, spans, config, span_method="exact")

    def __getattr__(self, name: str):  # everything else (spec, labels, ...) from the encoder
        return getattr(self.encoder, name)


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
    default = pipe.audio_encoder  # dtype auto
    dt = str(default.dtype).replace("torch.", "")
    fp32 = Emotion2vecEncoder(ModelSpec(str(paths["emotion2vec"]), device=default.device, dtype="float32"))
    shared = dict(
        transcriber=pipe.transcriber,
        text_classifier=pipe.text_classifier,
        sequence_embedder=pipe.sequence_embedder,
        vad=pipe.vad,
    )
    variants = [
        ("today: float32, every span again", Pipeline(config, audio_encoder=SpansExact(fp32), **shared)),
        ("float32, spans by timeline mode", Pipeline(config, audio_encoder=fp32, **shared)),
        (f"default: {dt}, spans by timeline mode", pipe),
    ]
    runs = []
    with tempfile.TemporaryDirectory() as d:
        warm = Path(d) / "warm.wav"
        sf.write(warm, speech(4.0), 16000)
        path = Path(d) / "speech.flac"
        sf.write(path, speech(a.seconds), 16000)
        for label, p in variants:
            p.analyze(warm)
            t0 = time.perf_counter()
            result = p.analyze(path)
            t_analyze = time.perf_counter() - t0
            t0 = time.perf_counter()
            result.save(Path(d) / "out")
            t_write = time.perf_counter() - t0
            runs.append((label, result, t_analyze, t_write))
    label, result, t_analyze, t_write = runs[-1]
    total = t_analyze + t_write
    n_sent, n_win = len(result.sentences), len(result.timeline.spans)
    print(
        f"{a.seconds:.0f} s of speech, {n_sent} sentences, {n_win} windows ({a.timeline} timeline), "
        f"voice side: {result.voice}"
    )
    print(
        f"end to end ({label}): {total:.2f} s = RTF {total / a.seconds:.3f} (analysis {t_analyze:.2f} s + "
        f"writing outputs {t_write:.2f} s)"
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
    print("voice side (audio_emotion stage) and end to end, same run:")
    base = runs[0][1].timings["audio_emotion"]
    for label, r, t_an, t_wr in runs:
        v = r.timings["audio_emotion"]
        print(
            f"  {label:42s} voice {v:6.2f} s (RTF {v / a.seconds:.3f}, {base / v:4.2f}x today)   "
            f"end to end {t_an + t_wr:6.2f} s (RTF {(t_an + t_wr) / a.seconds:.3f})"
        )


if __name__ == "__main__":
    main()
