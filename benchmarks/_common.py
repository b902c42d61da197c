"""Shared helpers for the benchmarks: machine description, full-size replicas, test audio."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CACHE = Path(os.environ.get("EMOFLOW_BENCH_CACHE", ROOT / ".cache" / "bench"))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {n} cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def full_replicas() -> dict[str, Path]:
    """Full-size random replicas (real model sizes), built once into the benchmark cache."""
    from emoflow.testing.replicas import build_distilbert, build_emotion2vec, build_text_classifier

    root = CACHE / "replicas-full"
    vocab = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
    paths = {
        "emotion2vec": root / "emotion2vec",
        "text-emotion": root / "text-emotion",
        "distilbert": root / "distilbert",
    }
    if not (paths["emotion2vec"] / "model.pt").exists():
        build_emotion2vec(paths["emotion2vec"], "full")
    if not (paths["text-emotion"] / "config.json").exists():
        build_text_classifier(paths["text-emotion"], "full")
    if not (paths["distilbert"] / "config.json").exists():
        build_distilbert(paths["distilbert"], "full", vocab=vocab if vocab.exists() else None)
    return paths


def speech(seconds: float) -> np.ndarray:
    """Real speech when ../shared is here (recordings looped), else a speech-like signal."""
    from emoflow.audio.io import load_audio

    parts = []
    for name in ("speech/interview.wav", "speech/three_moods.wav", "jfk.flac"):
        p = SHARED / "audio" / name
        if p.exists():
            parts.append(load_audio(p).samples)
    if not parts:
        t = np.arange(int(seconds * 16000)) / 16000
        return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
            np.float32
        )
    x = np.concatenate(parts)
    reps = int(np.ceil(seconds * 16000 / len(x)))
    return np.tile(x, reps)[: int(seconds * 16000)]
