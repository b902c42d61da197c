"""Whisper through faster-whisper (CTranslate2): any CTranslate2 Whisper conversion,
e.g. a converted CrisperWhisper. Optional: ``pip install emoflow[ct2]``.

Only speech goes to the recogniser, and the same speech as with the transformers backend:
emoflow's speech regions (Silero VAD, or the ones the pipeline computed) are grouped into
the same pieces and passed as ``clip_timestamps``; faster-whisper's own ``vad_filter`` stays
off (it would pick its own regions, so the two backends would transcribe different audio).
Words come back with times (in the recording) and probabilities and get the same repairs as
every other transcript.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from emoflow.asr.base import group_regions
from emoflow.asr.transcript_io import RawWord, repair_words
from emoflow.audio.io import Audio
from emoflow.config import AsrConfig
from emoflow.errors import ConfigError
from emoflow.models import MODEL_CACHE, ModelSpec, resolve_device, resolve_model_dir
from emoflow.types import TimeSpan, Transcript

log = logging.getLogger(__name__)


class CT2WhisperTranscriber:
    """Stage: audio → transcript with word times, through faster-whisper."""

    def __init__(
        self, spec: ModelSpec | str, config: AsrConfig | None = None, *, model: Any = None, vad: Any = None
    ) -> None:
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.config = config or AsrConfig()
        self.device = resolve_device(self.spec.device)
        if model is None:
            key = ("asr-ct2", self.spec.id, self.spec.revision, self.device, self.spec.dtype)
            model = MODEL_CACHE.get(key, self._load)
        self.model = model
        self.pause_adjust = (
            self.config.pause_adjust
            if self.config.pause_adjust is not None
            else "crisper" in self.spec.id.lower()
        )
        self._vad = vad

    @property
    def vad(self) -> Any:
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ConfigError("the faster-whisper backend needs `pip install emoflow[ct2]`") from e
        import torch

        path = resolve_model_dir(
            self.spec, ["model.bin"], what="CTranslate2 Whisper model", flag="--asr-model"
        )
        compute = (
            self.spec.dtype
            if self.spec.dtype != "auto"
            else ("float16" if self.device.startswith("cuda") else "int8")
        )
        # CTranslate2 has its own thread pool: size it by the caller's torch setting (the entry
        # point's thread policy, e.g. 1 in a Ray actor) rather than every core of the machine
        threads = torch.get_num_threads()
        return WhisperModel(
            str(path),
            device="cuda" if self.device.startswith("cuda") else "cpu",
            compute_type=compute,
            cpu_threads=threads,
        )

    def describe(self) -> dict[str, Any]:
        return {"backend": "faster-whisper", **self.spec.provenance(), "pause_adjust": self.pause_adjust}

    def __call__(self, audio: Audio, speech: Sequence[TimeSpan] | None = None) -> Transcript:
        """Transcribe the speech in ``audio`` (``speech``: precomputed VAD regions)."""
        if speech is None:
            speech = self.vad(audio)
        pieces = group_regions(
            speech, self.config.max_segment_s, self.config.max_gap_s, duration=audio.duration
        )
        if not pieces:  # an empty clip list would make faster-whisper decode the whole file
            english_only = not getattr(getattr(self.model, "model", None), "is_multilingual", True)
            return Transcript((), "en" if english_only else self.config.language)
        segments, info = self.model.transcribe(
            audio.samples,
            language=self.config.language,
            word_timestamps=True,
            beam_size=self.config.beam_size,
            vad_filter=False,
            clip_timestamps=[t for p in pieces for t in (p.start, p.end)],
            condition_on_previous_text=False,
        )
        raw = [RawWord(w.word, w.start, w.end, w.probability) for seg in segments for w in (seg.words or [])]
        words = repair_words(
            raw,
            audio_duration=audio.duration,
            drop_fillers=self.config.drop_fillers,
            pause_adjust=self.pause_adjust,
            whisper_spacing=True,
            name=self.spec.id,
        )
        return Transcript(tuple(words), info.language)


def make_transcriber(backend: str, spec: ModelSpec | str, config: AsrConfig | None = None) -> Any:
    """The transcriber for a backend name (``transformers`` or ``faster-whisper``)."""
    if backend == "transformers":
        from emoflow.asr.whisper_hf import HFWhisperTranscriber

        return HFWhisperTranscriber(spec, config)
    if backend in ("faster-whisper", "ct2"):
        return CT2WhisperTranscriber(spec, config)
    raise ConfigError(f"unknown ASR backend {backend!r}; use transformers or faster-whisper")
