"""Typed values passed between stages. All times are seconds (floats).

Other units carry their unit in the name (``*_samples``, ``*_ms``); seconds become
samples only through :func:`seconds_to_samples`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# 1.1: speakers (Word.speaker, Sentence.speaker, Result.diarization and Result.speakers);
# results of 1.0 still load (the new fields are optional there)
SCHEMA_VERSION = "1.1"
# The largest time a TimeSpan accepts (about 115 days). Larger values are corrupt input (a word
# "ending" at 1e308 s), and allowing them would let span arithmetic overflow to inf.
MAX_TIME_S = 1e7


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Convert a time in seconds to a sample index, rounding to the nearest sample."""
    return int(math.floor(seconds * sample_rate + 0.5))


def samples_to_seconds(samples: int, sample_rate: int) -> float:
    return samples / sample_rate


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """A closed interval ``[start, end]`` in seconds with ``0 <= start <= end <= MAX_TIME_S``."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"TimeSpan needs finite times, got ({self.start}, {self.end})")
        if self.end > MAX_TIME_S:
            raise ValueError(
                f"TimeSpan end {self.end} s is beyond the largest time accepted ({MAX_TIME_S:g} s); "
                "times must be seconds from the start of the recording"
            )
        if self.start < 0:
            raise ValueError(f"TimeSpan start must be >= 0, got {self.start}")
        if self.end < self.start:
            raise ValueError(f"TimeSpan end ({self.end}) is before start ({self.start})")

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    def overlaps(self, other: TimeSpan) -> bool:
        """True when the spans share more than a single instant."""
        return min(self.end, other.end) > max(self.start, other.start)

    def intersection(self, other: TimeSpan) -> TimeSpan | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return TimeSpan(start, end) if end >= start else None

    def overlap_duration(self, other: TimeSpan) -> float:
        return max(0.0, min(self.end, other.end) - max(self.start, other.start))

    def contains(self, t: float) -> bool:
        return self.start <= t <= self.end

    def to_list(self) -> list[float]:
        return [self.start, self.end]

    @classmethod
    def from_list(cls, pair: Sequence[float]) -> TimeSpan:
        """The inverse of :meth:`to_list`."""
        if len(pair) != 2:
            raise ValueError(f"a TimeSpan is [start, end], got {len(pair)} values")
        return cls(float(pair[0]), float(pair[1]))


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a transcript with its time span; ``probability`` when the ASR gives one;
    ``speaker`` (``SPEAKER_00``...) when the recording was diarised."""

    text: str
    span: TimeSpan
    probability: float | None = None
    speaker: str | None = None

    def __post_init__(self) -> None:
        if self.probability is not None and not math.isfinite(self.probability):
            raise ValueError(f"word {self.text!r}: probability must be finite, got {self.probability}")

    @property
    def start(self) -> float:
        return self.span.start

    @property
    def end(self) -> float:
        return self.span.end

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "start": self.start, "end": self.end}
        if self.probability is not None:
            d["probability"] = self.probability
        if self.speaker is not None:  # only when diarised: word dicts stay as they were otherwise
            d["speaker"] = self.speaker
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Word:
        prob, speaker = d.get("probability"), d.get("speaker")
        return cls(
            str(d["text"]),
            TimeSpan(float(d["start"]), float(d["end"])),
            None if prob is None else float(prob),
            None if speaker is None else str(speaker),
        )


def join_words(words: Iterable[Word]) -> str:
    """The text of a run of words: their texts joined by single spaces."""
    return " ".join(w.text for w in words)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Words with times, the text they make up and the language (ISO code) when known."""

    words: tuple[Word, ...]
    language: str | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if not self.text and self.words:
            object.__setattr__(self, "text", join_words(self.words))

    @property
    def span(self) -> TimeSpan | None:
        return TimeSpan(self.words[0].start, self.words[-1].end) if self.words else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "text": self.text,
            "language": self.language,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transcript:
        return cls(tuple(Word.from_dict(w) for w in d["words"]), d.get("language"), d.get("text", ""))

    def to_hf_chunks(self) -> dict[str, Any]:
        """The CrisperWhisper / transformers-pipeline JSON shape: ``{"text", "chunks"}``."""
        return {
            "text": self.text,
            "chunks": [{"text": " " + w.text, "timestamp": [w.start, w.end]} for w in self.words],
        }


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence: its position, text, time span and the words it is made of.

    Right after alignment ``span`` runs from the first word's start to the last word's
    end; after boundary refinement it is the speech inside that range. ``speaker``: who said
    it, when the recording was diarised (a sentence never spans a speaker change then).
    """

    index: int
    text: str
    span: TimeSpan
    words: tuple[Word, ...] = field(default=())
    speaker: str | None = None

    @property
    def start(self) -> float:
        return self.span.start

    @property
    def end(self) -> float:
        return self.span.end

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "speaker": self.speaker,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sentence:
        """The inverse of :meth:`to_dict`; ``speaker`` may be absent (results before 1.1)."""
        speaker = d.get("speaker")
        return cls(
            int(d["index"]),
            str(d["text"]),
            TimeSpan(float(d["start"]), float(d["end"])),
            tuple(Word.from_dict(w) for w in d.get("words", [])),
            None if speaker is None else str(speaker),
        )


def sentences_to_dict(sentences: Sequence[Sentence]) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "sentences": [s.to_dict() for s in sentences]}


def sentences_from_dict(d: Mapping[str, Any]) -> list[Sentence]:
    return [Sentence.from_dict(s) for s in d["sentences"]]


@dataclass(frozen=True, slots=True)
class EmotionScores:
    """Scores over a label set, in the model's label order (probabilities summing to 1)."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.scores):
            raise ValueError(f"{len(self.labels)} labels but {len(self.scores)} scores")

    @property
    def top(self) -> str:
        return self.labels[max(range(len(self.scores)), key=self.scores.__getitem__)]

    def ranked(self) -> list[tuple[str, float]]:
        """(label, score) pairs sorted by score, highest first (ties keep model order)."""
        return sorted(zip(self.labels, self.scores, strict=True), key=lambda p: -p[1])

    def to_dict(self, sort: bool = True) -> dict[str, list[Any]]:
        pairs = self.ranked() if sort else list(zip(self.labels, self.scores, strict=True))
        return {"labels": [p[0] for p in pairs], "scores": [float(p[1]) for p in pairs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmotionScores:
        """The inverse of :meth:`to_dict`, in the order stored (``to_dict(sort=False)`` keeps the
        model's label order; the default ``to_dict()`` stores them ranked)."""
        return cls(tuple(str(x) for x in d["labels"]), tuple(float(x) for x in d["scores"]))

    def as_mapping(self) -> dict[str, float]:
        return dict(zip(self.labels, self.scores, strict=True))


# ---- the voice side: scores and embeddings of stretches of audio ---------------------------
SpanMethod = Literal["exact", "pooled"]


@dataclass(frozen=True)
class AudioEmotion:
    """An audio encoder's scores and embedding (``(D,)``, float32) for one stretch of audio
    (emotion2vec's 9 classes; empty scores from an encoder without a classification head)."""

    scores: EmotionScores
    embedding: np.ndarray


@dataclass(frozen=True)
class Timeline:
    """Per-window scores (``W x L``; ``L = 0`` without a head) and embeddings (``W x D``) over
    the recording (:mod:`emoflow.inference` explains the ``exact`` and ``pooled`` modes)."""

    mode: str
    window_s: float
    hop_s: float
    labels: tuple[str, ...]
    spans: tuple[TimeSpan, ...]
    scores: np.ndarray
    embeddings: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "labels": list(self.labels),
            "windows": [
                {"start": s.start, "end": s.end, "scores": [float(x) for x in row]}
                for s, row in zip(self.spans, self.scores, strict=True)
            ],
        }


@dataclass(frozen=True)
class VoiceAnalysis:
    """The voice side of one recording (:meth:`emoflow.inference.Inference.analyze`).

    ``span_method``: how ``spans`` were computed (``exact``: each span through the model on
    its own; ``pooled``: means of the frames of one pass over the recording). ``dtype``: the
    model's compute dtype (``float32``, ``bfloat16`` or ``float16``).
    """

    spans: tuple[AudioEmotion, ...]
    utterance: AudioEmotion
    timeline: Timeline
    span_method: SpanMethod
    dtype: str

    def describe(self) -> dict[str, str]:
        """What a result records about how the voice side was computed."""
        return {"span_method": self.span_method, "dtype": self.dtype}
