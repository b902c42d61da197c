"""Whisper (and CrisperWhisper) through transformers, with word timestamps.

Only speech goes to the recogniser: Silero VAD finds the speech regions, which are
grouped into pieces of at most ~28 s and transcribed as arrays (never paths, which
would need the ffmpeg binary); a piece longer than 30 s is decoded in 30 s windows by
the pipeline's chunked long-form mode. Word times come from transformers' own DTW over the
alignment heads' cross-attentions, but those are computed by one teacher-forced decoder pass
instead of keeping every attention map during generation (see
:mod:`emoflow.asr.word_alignment`: the same times, a bounded memory). Word times are offset
back to the recording and repaired (see :mod:`emoflow.asr.transcript_io`); CrisperWhisper's
pause rule is applied to CrisperWhisper models.

Licences: CrisperWhisper (the default) is CC BY-NC 4.0 — non-commercial use only;
``openai/whisper-large-v3-turbo`` (MIT) is the permissive choice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from emoflow.asr.base import group_regions
from emoflow.asr.transcript_io import RawWord, repair_words
from emoflow.asr.word_alignment import install as install_low_memory_alignment
from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.config import DEFAULT_ASR_MODEL, AsrConfig
from emoflow.errors import ModelError
from emoflow.models import (
    MODEL_CACHE,
    ModelSpec,
    resolve_device,
    resolve_dtype,
    resolve_model_dir,
)
from emoflow.types import TimeSpan, Transcript

log = logging.getLogger(__name__)


class HFWhisperTranscriber:
    """Stage: audio → transcript with word times, through ``transformers``' ASR pipeline."""

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_ASR_MODEL,
        config: AsrConfig | None = None,
        *,
        pipeline: Any = None,
        vad: Any = None,
    ) -> None:
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.config = config or AsrConfig()
        self.device = resolve_device(self.spec.device)
        self.dtype = resolve_dtype(self.spec.dtype, self.device)
        if pipeline is None:
            key = ("asr-hf", self.spec.id, self.spec.revision, self.device, str(self.dtype))
            pipeline = MODEL_CACHE.get(key, self._load)
        self.pipe = pipeline
        gen = self.pipe.model.generation_config
        if not getattr(gen, "alignment_heads", None):
            raise ModelError(
                f"ASR model {self.spec.id} has no alignment_heads in its generation_config, so it "
                "cannot give word timestamps; use a Whisper checkpoint that ships them"
            )
        if not install_low_memory_alignment(self.pipe.model):
            log.warning(
                "ASR model %s: word timestamps keep every attention map (memory grows with the "
                "model size); this model type does not take emoflow's low-memory alignment",
                self.spec.id,
            )
        self.multilingual = bool(getattr(gen, "is_multilingual", False))
        self.pause_adjust = (
            self.config.pause_adjust
            if self.config.pause_adjust is not None
            else "crisper" in self.spec.id.lower()
        )
        self._vad = vad

    def _load(self) -> Any:
        from transformers import pipeline

        path = resolve_model_dir(self.spec, ["config.json"], what="ASR model", flag="--asr-model")
        return pipeline("automatic-speech-recognition", model=str(path), device=self.device, dtype=self.dtype)

    @property
    def vad(self) -> Any:
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", **self.spec.provenance(), "pause_adjust": self.pause_adjust}

    def _generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"num_beams": self.config.beam_size}
        if self.multilingual:
            kw["task"] = "transcribe"
            if self.config.language:
                kw["language"] = self.config.language
        return kw

    def transcribe_pieces(self, audio: Audio, pieces: Sequence[TimeSpan]) -> list[RawWord]:
        """Raw words of each piece, times offset to the recording."""
        if not pieces:
            return []
        outs: list[Any] = [None] * len(pieces)
        short = [i for i, p in enumerate(pieces) if p.duration <= 30.0]
        long = [i for i, p in enumerate(pieces) if p.duration > 30.0]
        for idx, extra in ((short, {}), (long, {"chunk_length_s": 30})):
            if not idx:
                continue
            inputs = [
                {"raw": audio.slice(pieces[i].start, pieces[i].end), "sampling_rate": TARGET_RATE}
                for i in idx
            ]
            res = self.pipe(
                inputs,
                return_timestamps="word",
                batch_size=self.config.batch_size,
                generate_kwargs=self._generate_kwargs(),
                **extra,
            )
            for i, r in zip(idx, res, strict=True):
                outs[i] = r
        words: list[RawWord] = []
        for piece, out in zip(pieces, outs, strict=True):
            for c in out.get("chunks", []):
                s, e = c.get("timestamp", (None, None))
                words.append(
                    RawWord(
                        c["text"],
                        None if s is None else round(piece.start + s, 3),
                        None if e is None else round(min(piece.end, piece.start + e), 3),
                    )
                )
        return words

    def __call__(self, audio: Audio, speech: Sequence[TimeSpan] | None = None) -> Transcript:
        """Transcribe the speech in ``audio`` (``speech``: precomputed VAD regions)."""
        if speech is None:
            speech = self.vad(audio)
        pieces = group_regions(
            speech, self.config.max_segment_s, self.config.max_gap_s, duration=audio.duration
        )
        raw = self.transcribe_pieces(audio, pieces)
        words = repair_words(
            raw,
            audio_duration=audio.duration,
            drop_fillers=self.config.drop_fillers,
            pause_adjust=self.pause_adjust,
            whisper_spacing=True,
            name=self.spec.id,
        )
        language = self.config.language if self.multilingual else "en"
        return Transcript(tuple(words), language)
