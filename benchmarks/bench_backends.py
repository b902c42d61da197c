"""Model backends against the user's design-document method, same model, same process.

(a) emotion2vec timeline (window 3 s, hop 1 s) on full-size emotion2vec_plus_large
    replica: the design document writes a temp wav per window and calls
    ``AutoModel.generate`` on it (and drops the final partial window); emoflow's ``exact``
    batches the windows in memory and ``pooled`` runs the audio through once in chunks.
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


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_timeline(paths, seconds: float) -> None:
    from emoflow.audio.io import Audio
    from emoflow.speech.emotion2vec import Emotion2vecEncoder, TimelineConfig

    enc = Emotion2vecEncoder(str(paths["emotion2vec"]))
    audio = Audio(speech(seconds))
    enc.utterance(Audio(audio.samples[: 3 * 16000]))  # warm-up
    t_seed, n_seed = timed(lambda: design_document_timeline(enc.automodel, audio.samples))
    t_exact, tl_e = timed(lambda: enc.timeline(audio, TimelineConfig(mode="exact")))
    t_pooled, tl_p = timed(lambda: enc.timeline(audio, TimelineConfig(mode="pooled")))
    print(
        f"(a) timeline, {seconds:.0f} s audio, window 3 s / hop 1 s, full-size emotion2vec replica "
        f"(dim {enc.dim}):"
    )
    print(
        f"    design document (temp wav + generate per window): {t_seed:6.2f} s for {n_seed} windows "
        f"(RTF {t_seed / seconds:.3f})"
    )
    print(
        f"    emoflow exact : {t_exact:6.2f} s for {len(tl_e.spans)} windows (RTF {t_exact / seconds:.3f}) "
        f"-> {t_seed / t_exact:.2f}x"
    )
    print(
        f"    emoflow pooled: {t_pooled:6.2f} s for {len(tl_p.spans)} windows (RTF {t_pooled / seconds:.3f}) "
        f"-> {t_seed / t_pooled:.2f}x"
    )
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
