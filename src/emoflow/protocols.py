"""The seams between stages: what the pipeline, fusion, batch engines and the service need
from each model stage. Any object with these methods fits (tests inject fakes; other
backends plug in without subclassing). Provenance comes from the stage's settings and
never loads a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.provenance import Provenance
from emoflow.types import (
    AudioEmotion,
    EmotionScores,
    SpanMethod,
    Timeline,
    TimeSpan,
    Transcript,
    VoiceAnalysis,
)


@runtime_checkable
class SpeechRegions(Protocol):
    """Voice activity detection: where in the recording someone speaks."""

    def __call__(self, audio: Audio) -> list[TimeSpan]: ...


@runtime_checkable
class Transcriber(Protocol):
    """16 kHz mono audio → a transcript with word times."""

    def __call__(self, audio: Audio, speech: Sequence[TimeSpan] | None = None) -> Transcript: ...

    def provenance(self) -> Provenance: ...


@runtime_checkable
class AudioEmotionModel(Protocol):
    """The voice branch: scores and embeddings for the recording, spans and a timeline."""

    labels: tuple[str, ...]
    dim: int

    def utterance(self, audio: Audio) -> AudioEmotion: ...

    def spans(self, audio: Audio, spans: Sequence[TimeSpan]) -> list[AudioEmotion]: ...

    def timeline(self, audio: Audio, config: TimelineConfig | None = None) -> Timeline: ...

    def analyze(
        self,
        audio: Audio,
        spans: Sequence[TimeSpan],
        config: TimelineConfig | None = None,
        span_method: SpanMethod | None = None,
    ) -> VoiceAnalysis: ...

    def provenance(self) -> Provenance: ...


@runtime_checkable
class TextEmotionModel(Protocol):
    """Sentences → emotion scores, in the model's own label order."""

    labels: tuple[str, ...]

    def scores(self, texts: Sequence[str]) -> np.ndarray: ...

    def __call__(self, texts: Sequence[str]) -> list[EmotionScores]: ...

    def provenance(self) -> Provenance: ...


@runtime_checkable
class SequenceEmbedder(Protocol):
    """Emotion sequences ("joy__surprise__neutral") → one vector each, ``(N, D)`` float32."""

    dim: int

    def __call__(self, sequences: Sequence[str]) -> np.ndarray: ...

    def provenance(self) -> Provenance: ...
