"""Shared fixtures. ``../shared`` (fixtures and the real Whisper tiny.en) is optional:
tests that need it skip with a reason when it is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()
WHISPER_TINY = SHARED / "models" / "whisper-tiny.en"
SPEECH_DIR = SHARED / "audio" / "speech"


def need_shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (not present in this checkout)")
    return p


@pytest.fixture(scope="session")
def shared() -> Path:
    return need_shared()


@pytest.fixture(scope="session")
def whisper_tiny_dir() -> Path:
    return need_shared("models", "whisper-tiny.en")


def speech_files() -> list[Path]:
    if not SPEECH_DIR.exists():
        return []
    return sorted(p for p in SPEECH_DIR.iterdir() if p.suffix in (".wav", ".flac"))


def truth_for(audio: Path) -> dict[str, Any]:
    return json.loads(audio.with_name(audio.stem + ".truth.json").read_text())


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emoflow", *args], capture_output=True, text=True, timeout=timeout
    )


def boundary_error(pred: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    """Mean distance (s) from each predicted start/end to the nearest true start/end.

    Boundary matching rather than sentence pairing, so that an ASR that merges two
    spoken sentences into one is judged on the boundaries it does place.
    """
    starts = [t[0] for t in truth]
    ends = [t[1] for t in truth]
    errs = [min(abs(s - x) for x in starts) for s, _ in pred] + [
        min(abs(e - x) for x in ends) for _, e in pred
    ]
    return sum(errs) / len(errs)


@pytest.fixture(scope="session")
def replicas(tmp_path_factory) -> dict[str, Path]:
    """Tiny random replicas of every model (real architectures, config formats, labels)."""
    from emoflow.testing.replicas import build_all

    return build_all(tmp_path_factory.mktemp("replicas"), "tiny")


@pytest.fixture(scope="session")
def e2v(replicas):
    from emoflow.speech.emotion2vec import Emotion2vecEncoder

    return Emotion2vecEncoder(str(replicas["emotion2vec"]), batch_size=4)


@pytest.fixture(scope="session")
def replica_args(replicas, whisper_tiny_dir) -> list[str]:
    """CLI options that point every model at the tiny replicas and the real Whisper tiny.en."""
    return [
        "--asr-model",
        str(whisper_tiny_dir),
        "--audio-model",
        str(replicas["emotion2vec"]),
        "--text-model",
        str(replicas["text-emotion"]),
        "--encoder-model",
        str(replicas["distilbert"]),
    ]


@pytest.fixture(scope="session")
def replica_config(replicas, whisper_tiny_dir):
    """The same, as a PipelineConfig."""
    from emoflow.config import PipelineConfig

    return PipelineConfig(
        asr_model=str(whisper_tiny_dir),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
