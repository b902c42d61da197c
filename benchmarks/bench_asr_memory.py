"""Peak memory of Whisper word timestamps (transformers backend), today's method against
emoflow's, side by side in one run.

- ``transformers``: the stock ASR pipeline with ``return_timestamps="word"``: generate keeps
  every encoder and decoder attention map to time the words.
- ``emoflow``: the same pipeline after ``HFWhisperTranscriber`` installed
  :mod:`emoflow.asr.word_alignment`: generation keeps no attention maps; one teacher-forced
  decoder pass computes the alignment heads' cross-attentions only.

The model is a random-weight replica with the real large-v3 shape (CrisperWhisper's
architecture): d_model 1280, 32 + 32 layers, 20 heads, FFN 5120, 128 mel bins, vocabulary
51866, 1.55 B parameters (6.2 GB in float32); the tokenizer is the tiny replica's, so ids
outside it are suppressed. Generation is bounded (``--tokens`` new tokens, one decoding
call) so random weights terminate. Each method runs in its own subprocess; the figure is
the peak RSS during transcription minus the RSS after the weights are loaded (the peak is
reset through ``/proc/self/clear_refs`` before transcribing, else sampled).

    python benchmarks/bench_asr_memory.py [--seconds 30] [--tokens 150] [--shape large-v3|tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

SHAPES = {
    "large-v3": dict(d_model=1280, layers=32, heads=20, ffn=5120, mels=128, vocab=51866),
    "tiny": dict(d_model=384, layers=4, heads=6, ffn=1536, mels=80, vocab=51865),  # for a quick check
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Peak RSS (bytes) of this process from now on: the kernel's high-water mark after a
    reset, or, where the reset is not allowed, a 5 ms sampler."""

    def __enter__(self) -> PeakRss:
        self.peak = 0
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.kernel = True
        except OSError:
            self.kernel = False
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_kb("VmRSS") * 1024)

    def __exit__(self, *exc: object) -> None:
        if self.kernel:
            self.peak = _status_kb("VmHWM") * 1024
        else:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self.peak = max(self.peak, _status_kb("VmRSS") * 1024)


def build_pipeline(shape: str, tokenizer_dir: str):
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
        pipeline,
    )

    s = SHAPES[shape]
    tok = WhisperTokenizer.from_pretrained(tokenizer_dir)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<|endoftext|>", "<|startoftranscript|>"]}
    ids.update({t: tok.convert_tokens_to_ids(t) for t in ["<|en|>", "<|transcribe|>", "<|translate|>"]})
    ids.update({t: tok.convert_tokens_to_ids(t) for t in ["<|notimestamps|>", "<|startofprev|>"]})
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    cfg = WhisperConfig(
        vocab_size=s["vocab"],
        num_mel_bins=s["mels"],
        d_model=s["d_model"],
        encoder_layers=s["layers"],
        decoder_layers=s["layers"],
        encoder_attention_heads=s["heads"],
        decoder_attention_heads=s["heads"],
        encoder_ffn_dim=s["ffn"],
        decoder_ffn_dim=s["ffn"],
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    # large-v3's alignment heads (10 heads in 9 layers), scaled to the shape's layers
    lv3 = [[7, 0], [10, 17], [12, 18], [13, 12], [16, 1], [17, 14], [19, 11], [21, 4], [24, 1], [25, 6]]
    heads = [[lay * s["layers"] // 32, h % s["heads"]] for lay, h in lv3]
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[eot],
        suppress_tokens=list(range(len(tok), s["vocab"])),  # ids the small tokenizer lacks
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        max_initial_timestamp_index=50,
        alignment_heads=heads,
    )
    fe = WhisperFeatureExtractor(feature_size=s["mels"], sampling_rate=16000)
    pipe = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=tok,
        feature_extractor=fe,
        device="cpu",
        dtype=torch.float32,
    )
    n_params = sum(p.numel() for p in model.parameters())
    return pipe, n_params


def one_call_processor(tokens: int, text_id: int, last_timestamp_id: int):
    """Ends the generated text with ``<text> <|30.00|>`` after exactly ``tokens`` tokens: a
    "single timestamp ending", so Whisper's generate makes one decoding call for the window
    (random weights otherwise end on a timestamp pair and seek again and again)."""
    from transformers import LogitsProcessor

    class EndOnce(LogitsProcessor):
        start: int | None = None

        def __call__(self, input_ids, scores):
            if self.start is None:
                self.start = input_ids.shape[1]
            n = input_ids.shape[1] - self.start
            for step, token in ((tokens - 2, text_id), (tokens - 1, last_timestamp_id)):
                if n == step:
                    scores[:] = float("-inf")
                    scores[:, token] = 0.0
            return scores

    return EndOnce()


def worker(method: str, shape: str, seconds: float, tokens: int, tokenizer_dir: str) -> None:
    import gc

    import torch

    from _common import speech

    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe, n_params = build_pipeline(shape, tokenizer_dir)
    kwargs = {"language": "en", "task": "transcribe", "num_beams": 1}
    if method == "emoflow":
        from emoflow.asr.whisper_hf import HFWhisperTranscriber

        asr = HFWhisperTranscriber("large-v3-shape-replica", pipeline=pipe)  # installs the alignment
        kwargs = asr.generate_kwargs()
    tok = pipe.tokenizer
    end = one_call_processor(
        tokens, tok.encode(" the", add_special_tokens=False)[0], tok.convert_tokens_to_ids("<|30.00|>")
    )
    kwargs.update(max_new_tokens=tokens, min_new_tokens=tokens, logits_processor=[end])
    audio = speech(seconds)
    gc.collect()
    base = _status_kb("VmRSS") * 1024
    t0 = time.perf_counter()
    with torch.inference_mode(), PeakRss() as peak:
        out = pipe(
            {"raw": audio, "sampling_rate": 16000},
            return_timestamps="word",
            generate_kwargs=kwargs,
        )
    dt = time.perf_counter() - t0
    chunks = [[c["text"], *c["timestamp"]] for c in out["chunks"]]
    print(
        "RESULT "
        + json.dumps(
            {
                "method": method,
                "params": n_params,
                "rss_loaded": base,
                "peak": peak.peak,
                "extra": peak.peak - base,
                "kernel_peak": peak.kernel,
                "seconds": dt,
                "chunks": chunks,
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--tokens", type=int, default=150, help="new tokens generated (bounded, forced)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="large-v3")
    p.add_argument("--methods", default="emoflow,transformers")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.shape, a.seconds, a.tokens, a.tokenizer_dir)
        return

    from _common import machine
    from emoflow.testing.replicas import build_whisper

    print(f"# {machine()}")
    print(
        f"# Whisper word timestamps, {a.shape}-shape random replica, {a.seconds:g} s of speech, "
        f"{a.tokens} generated tokens"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_whisper(tmp)  # only its tokenizer is used
        for method in a.methods.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--tokenizer-dir", tmp]
            cmd += ["--shape", a.shape, "--seconds", str(a.seconds), "--tokens", str(a.tokens)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                print(f"{method:12s} failed (exit {proc.returncode}): {' | '.join(tail)}")
                continue
            r = json.loads(line[len("RESULT ") :])
            results[method] = r
            print(
                f"{method:12s} params {r['params'] / 1e9:.2f} B  "
                f"RSS after load {r['rss_loaded'] / 2**30:.2f} GiB  "
                f"peak {r['peak'] / 2**30:.2f} GiB  beyond the weights {r['extra'] / 2**30:.2f} GiB  "
                f"time {r['seconds']:.1f} s  words {len(r['chunks'])}"
                + ("" if r["kernel_peak"] else "  (peak sampled every 5 ms)")
            )
    if len(results) == 2:
        x, y = (results[m]["chunks"] for m in ("emoflow", "transformers"))
        same = [c[0] for c in x] == [c[0] for c in y]
        diff = max(
            (
                abs(float(u) - float(v))
                for c, d in zip(x, y)
                for u, v in zip(c[1:], d[1:])
                if None not in (u, v)
            ),
            default=0.0,
        )
        ratio = results["transformers"]["extra"] / max(results["emoflow"]["extra"], 1)
        print(
            f"same words: {same}; largest word-time difference {diff * 1000:.0f} ms; "
            f"memory ratio {ratio:.1f}x"
        )


if __name__ == "__main__":
    main()
