"""Voice activity detection with Silero VAD (the ``silero-vad`` package ships its model; offline).

Silero is a neural VAD trained on noisy, multi-language data; unlike an energy gate it
holds up under background noise, which is what sentence-boundary refinement and
speech-only transcription need.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.types import TimeSpan

log = logging.getLogger(__name__)


_THREADS_LOCK = threading.Lock()


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30


class SpeechDetector:
    """Finds the speech regions of a recording. The model loads once, in the constructor."""

    def __init__(self, config: VadConfig | None = None, model: Any = None) -> None:
        self.config = config or VadConfig()
        if model is None:
            import torch

            threads = torch.get_num_threads()
            try:  # importing silero_vad calls torch.set_num_threads(1) for the whole process
                from silero_vad import load_silero_vad

                model = load_silero_vad()
            finally:
                torch.set_num_threads(threads)  # loading a model never changes the caller's policy
        self.model = model
        self._lock = threading.Lock()  # the JIT model keeps recurrent state: one caller at a time

    def __call__(self, audio: Audio | np.ndarray) -> list[TimeSpan]:
        """Speech regions, in seconds, in time order."""
        import torch
        from silero_vad import get_speech_timestamps

        samples = audio.samples if isinstance(audio, Audio) else audio
        if len(samples) == 0:
            return []
        c = self.config
        # one VAD call at a time in the process: the thread count is process-wide, so it is read,
        # lowered and restored under one lock (two calls interleaving would leave it at 1)
        with _THREADS_LOCK, self._lock, torch.inference_mode():
            threads = torch.get_num_threads()
            # thousands of tiny calls (one per 32 ms): one thread is faster, and much faster when the
            # cores are shared (OpenMP threads spin-wait on every call)
            torch.set_num_threads(1)
            try:
                regions = get_speech_timestamps(
                    torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
                    self.model,
                    sampling_rate=TARGET_RATE,
                    threshold=c.threshold,
                    min_speech_duration_ms=c.min_speech_ms,
                    min_silence_duration_ms=c.min_silence_ms,
                    speech_pad_ms=c.speech_pad_ms,
                    return_seconds=False,
                )
            finally:
                torch.set_num_threads(threads)
        return [TimeSpan(r["start"] / TARGET_RATE, r["end"] / TARGET_RATE) for r in regions]
