"""Voice activity detection with Silero VAD (the ``silero-vad`` package ships its model; offline).

Silero is a neural VAD trained on noisy, multi-language data; unlike an energy gate it
holds up under background noise, which is what sentence-boundary refinement and
speech-only transcription need.

A :class:`~emoflow.stage.ModelStage` whose weights ship in a package: no folder to resolve
(``_load`` imports the package's model), and its provenance is the package's version.
``preprocess`` = samples → tensor, ``_forward`` = Silero over the recording (one thread, one
call at a time in the process), ``postprocess`` = sample indices → seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.models import ModelSpec, one_cpu_thread
from emoflow.provenance import Provenance, package_provenance
from emoflow.stage import ModelStage
from emoflow.types import TimeSpan

log = logging.getLogger(__name__)

SILERO = "silero-vad"  # the model's id in results, and the package that ships it


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30


class SpeechDetector(ModelStage[Any]):
    """Finds the speech regions of a recording. The model loads once, in the constructor
    (``model``: one built by the caller)."""

    kind = "vad"
    what = "Silero VAD"

    def __init__(self, config: VadConfig | None = None, model: Any = None) -> None:
        self.config = config or VadConfig()
        super().__init__(ModelSpec(SILERO, device="cpu", dtype="float32"), loaded=model)

    def _load(self) -> Any:
        import torch

        threads = torch.get_num_threads()
        try:  # importing silero_vad calls torch.set_num_threads(1) for the whole process
            from silero_vad import load_silero_vad

            return load_silero_vad()
        finally:
            torch.set_num_threads(threads)  # loading a model never changes the caller's policy

    @property
    def model(self) -> Any:
        return self.loaded

    def provenance(self) -> Provenance:
        """The weights are the package's: its version."""
        return package_provenance(SILERO, SILERO)

    def __call__(self, audio: Audio | np.ndarray) -> list[TimeSpan]:
        """Speech regions, in seconds, in time order."""
        samples = audio.samples if isinstance(audio, Audio) else audio
        if len(samples) == 0:
            return []
        return self.run(samples)

    def preprocess(self, samples: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))

    def _forward(self, wav: Any) -> list[dict[str, int]]:
        from silero_vad import get_speech_timestamps

        c = self.config
        # thousands of tiny calls (one per 32 ms): one thread is faster, and much faster when the
        # cores are shared (OpenMP threads spin-wait on every call); the caller's count comes back.
        # The lock also serialises calls on the shared JIT model, which keeps recurrent state.
        with one_cpu_thread():
            return get_speech_timestamps(
                wav,
                self.model,
                sampling_rate=TARGET_RATE,
                threshold=c.threshold,
                min_speech_duration_ms=c.min_speech_ms,
                min_silence_duration_ms=c.min_silence_ms,
                speech_pad_ms=c.speech_pad_ms,
                return_seconds=False,
            )

    def postprocess(self, regions: list[dict[str, int]]) -> list[TimeSpan]:
        return [TimeSpan(r["start"] / TARGET_RATE, r["end"] / TARGET_RATE) for r in regions]
