"""Model backends against the user's design-document method, same model, same process.

(a) emotion2vec on a full-size emotion2vec_plus_large replica, float32 and the default
    dtype (``auto``: bfloat16 on CPUs with native bf16) side by side:
    - one float32 FunASR ``generate`` pass over the whole audio (the yardstick);
    - the timeline (window 3 s, hop 1 s): the design document writes a temp wav per window
      and calls ``AutoModel.generate`` on it (and drops the final partial window); emoflow's
      ``exact`` batches the windows in memory and ``pooled`` runs the audio through once;
    - the voice side of ``analyze`` (sentence spans + utterance + timeline): today's method
      (every sentence through the model again) against spans from the pooled pass;
    - how far the default dtype's outputs are from float32's.
(b) text emotion of 200 sentences on a full-size distilroberta replica: one
    ``pipeline("text-classification")`` call per sentence (design document) vs emoflow's
    batched classifier.

    python benchmarks/bench_backends.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import soundfile as sf

from _common import full_replicas, machine, speech


def design_document_timeline(
    model, waveform: np.ndarray, sr: int = 16000, segment_length: int = 3, hop_length: int = 1
) -> int:
    """The seed's analyze_audio_over_time: temp wav + generate per window, tail ignored."""
    segment_samples, hop_samples = int(segment_length * sr), int(hop_length * sr)
    n = 0
    with tempfile.TemporaryDirectory() as d:
        temp_path = os.path.join(d, "temp_segment.wav")
        for start_idx in range(0, len(waveform) - segment_samples + 1, hop_samples):
            sf.write(temp_path, waveform[start_idx : start_idx + segment_samples], sr)
            result = model.generate(
                temp_path,
                output_dir=os.path.join(d, "outputs"),
                granularity="utterance",
                extract_embedding=False,
            )
            n += len(result[0]["scores"]) > 0
    return n


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def sentence_spans(seconds: float, seed: int = 0) -> list:
    """Sentence-like spans of 1.5-5 s with 0.1-0.4 s pauses, covering the audio."""
    from emoflow.types import TimeSpan

    rng = np.random.default_rng(seed)
    spans, t = [], 0.2
    while t + 1.0 < seconds:
        end = min(seconds, t + rng.uniform(1.5, 5.0))
        spans.append(TimeSpan(round(t, 3), round(end, 3)))
        t = end + rng.uniform(0.1, 0.4)
    return spans


def bench_timeline(paths, seconds: float) -> None:
    from emoflow.audio.io import Audio
    from emoflow.config import TimelineConfig
    from emoflow.models import ModelSpec
    from emoflow.speech.emotion2vec import Emotion2vecEncoder

    fp32 = Emotion2vecEncoder(ModelSpec(str(paths["emotion2vec"]), dtype="float32"))
    auto = Emotion2vecEncoder(ModelSpec(str(paths["emotion2vec"]), dtype="auto"))
    dt = str(auto.dtype).replace("torch.", "")
    audio = Audio(speech(seconds))
    sents = sentence_spans(seconds)
    for enc in (fp32, auto):
        enc.utterance(Audio(audio.samples[: 3 * 16000]))  # warm-up
    fp32.automodel.generate(audio.samples[: 3 * 16000], granularity="utterance")
    exact, pooled = TimelineConfig(mode="exact"), TimelineConfig(mode="pooled")

    t_gen, _ = timed(lambda: fp32.automodel.generate(audio.samples, granularity="utterance"))
    t_seed, n_seed = timed(lambda: design_document_timeline(fp32.automodel, audio.samples))
    t = {}
    out = {}
    for name, enc in (("float32", fp32), ("auto", auto)):
        t[name, "exact"], out[name, "exact"] = timed(enc.timeline, audio, exact)
        t[name, "pooled"], out[name, "pooled"] = timed(enc.timeline, audio, pooled)
        t[name, "voice-today", "pooled"], _ = timed(enc.analyze, audio, sents, pooled, span_method="exact")
        t[name, "voice", "pooled"], out[name, "voice"] = timed(enc.analyze, audio, sents, pooled)
    n_win = len(out["float32", "exact"].spans)

    def rtf(x: float) -> str:
        return f"{x:6.2f} s (RTF {x / seconds:.3f})"

    print(
        f"(a) emotion2vec, {seconds:.0f} s audio, full-size replica (dim {fp32.dim}), "
        f"default dtype auto = {dt} here; float32 | {dt} side by side"
    )
    print(f"    one float32 FunASR generate pass over the whole audio: {rtf(t_gen)}")
    print(f"    timeline, window 3 s / hop 1 s ({n_win} windows):")
    print(f"      design document (temp wav + generate per window, float32): {rtf(t_seed)}, {n_seed} windows")
    for mode in ("exact", "pooled"):
        a, b = t["float32", mode], t["auto", mode]
        print(
            f"      emoflow {mode:6s}: float32 {rtf(a)} -> {t_seed / a:.2f}x | {dt} {rtf(b)} "
            f"-> {t_seed / b:.2f}x the design document"
        )
    print(f"    voice side of analyze ({len(sents)} sentence spans + utterance + timeline):")
    a, b = t["float32", "voice-today", "pooled"], t["auto", "voice-today", "pooled"]
    print(
        f"      pooled timeline, today (every span through the model again): float32 {rtf(a)} | {dt} {rtf(b)}"
    )
    a, b = t["float32", "voice", "pooled"], t["auto", "voice", "pooled"]
    today = t["float32", "voice-today", "pooled"]
    print(
        f"      pooled timeline, spans from the pooled pass (new default): float32 {rtf(a)} | {dt} {rtf(b)}"
    )
    print(
        f"      new default ({dt}, one pass) vs today's float32: {today / b:.2f}x; "
        f"vs one float32 generate pass: {t_gen / b:.2f}x faster"
    )
    e32, e16 = out["float32", "voice"], out["auto", "voice"]
    s32 = np.vstack([e32.timeline.scores, [r.scores.scores for r in (*e32.spans, e32.utterance)]])
    s16 = np.vstack([e16.timeline.scores, [r.scores.scores for r in (*e16.spans, e16.utterance)]])
    v32 = np.vstack([e32.timeline.embeddings, [r.embedding for r in (*e32.spans, e32.utterance)]])
    v16 = np.vstack([e16.timeline.embeddings, [r.embedding for r in (*e16.spans, e16.utterance)]])
    cos = (v32 * v16).sum(1) / np.linalg.norm(v32, axis=1) / np.linalg.norm(v16, axis=1)
    print(
        f"    {dt} vs float32 over {len(s32)} outputs (windows, spans, utterance): max score difference "
        f"{np.abs(s32 - s16).max():.1e}, same top label {np.mean(s32.argmax(1) == s16.argmax(1)):.0%}, "
        f"embedding cosine min {cos.min():.5f} (random weights: indicative only)"
    )
    tl_e, tl_p = out["float32", "exact"], out["float32", "pooled"]
    agree = float(np.mean(tl_e.scores.argmax(1) == tl_p.scores.argmax(1)))
    print(f"    exact vs pooled top-label agreement: {agree:.0%} (random weights: indicative only)")


def bench_text(paths, n: int = 200) -> None:
    import torch
    from transformers import pipeline

    from emoflow.models import ModelSpec
    from emoflow.text.emotion import TextEmotionClassifier

    base = [
        "I can't believe we finally won the championship!",
        "The coach told us he was leaving.",
        "What are we supposed to do now?",
        "Dr. Smith said the results were fine, so I feel much better.",
        "That was the most disgusting thing I have ever seen.",
        "Honestly, I was scared.",
    ]
    sentences = [f"{base[i % len(base)]} ({i})" for i in range(n)]
    fp32 = TextEmotionClassifier(ModelSpec(str(paths["text-emotion"]), dtype="float32"))
    auto = TextEmotionClassifier(ModelSpec(str(paths["text-emotion"]), dtype="auto"))
    pipe = pipeline(
        "text-classification", model=fp32.model, tokenizer=fp32.tokenizer, top_k=None, device="cpu"
    )
    pipe(sentences[0])
    fp32(sentences[:2])
    auto(sentences[:2])
    t_seed, _ = timed(lambda: [pipe(s) for s in sentences])
    t_fp32, out = timed(lambda: fp32(sentences))
    t_auto, out_auto = timed(lambda: auto(sentences))
    threads = torch.get_num_threads()
    print(f"(b) text emotion, {n} sentences, full-size distilroberta replica, torch threads {threads}:")
    print(
        f"    design document (one pipeline call per sentence, float32): {t_seed:6.2f} s "
        f"({n / t_seed:6.1f} sentences/s)"
    )
    print(
        f"    emoflow batched, float32 (batch 32, sorted by length)     : {t_fp32:6.2f} s "
        f"({n / t_fp32:6.1f} sentences/s) -> {t_seed / t_fp32:.2f}x"
    )
    print(
        f"    emoflow default (batched, dtype auto = {str(auto.dtype).replace('torch.', '')} here)    : "
        f"{t_auto:6.2f} s ({n / t_auto:6.1f} sentences/s) -> {t_seed / t_auto:.2f}x"
    )
    ref = pipe(sentences[:5])
    diff = max(abs(d["score"] - o.as_mapping()[d["label"]]) for r, o in zip(ref, out[:5]) for d in r)
    diff_auto = max(
        abs(d["score"] - o.as_mapping()[d["label"]]) for r, o in zip(ref, out_auto[:5]) for d in r
    )
    print(f"    max score difference vs the pipeline: float32 {diff:.1e}, default {diff_auto:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--sentences", type=int, default=200)
    a = ap.parse_args()
    print("machine:", machine())
    paths = full_replicas()
    bench_timeline(paths, a.seconds)
    bench_text(paths, a.sentences)


if __name__ == "__main__":
    main()
