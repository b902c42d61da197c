"""The typed result of an analysis and its JSON form (with a JSON Schema).

Plain records only: no model backend is imported here. Each type writes and reads its own JSON
(``to_dict`` / ``from_dict``; the parts' types in :mod:`emoflow.types` and
:mod:`emoflow.provenance`); writing a result's files is the export layer's
(:func:`emoflow.export.writers.save_result`, which :meth:`Result.save` calls).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.diarization.speakers import SegmentEmotion, SpeakerSummary
from emoflow.diarization.types import Diarization
from emoflow.errors import InputError
from emoflow.provenance import Provenance
from emoflow.types import (
    SCHEMA_VERSION,
    AudioEmotion,
    EmotionScores,
    Sentence,
    Timeline,
    TimeSpan,
    Transcript,
)

if TYPE_CHECKING:
    import pandas as pd

ALL_FORMATS = ("json", "npz", "csv", "srt", "png", "html")
EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class SourceInfo:
    path: str | None
    sha256: str | None
    duration_s: float
    sample_rate: int
    channels: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceInfo:
        return cls(
            None if d.get("path") is None else str(d["path"]),
            None if d.get("sha256") is None else str(d["sha256"]),
            float(d["duration_s"]),
            int(d["sample_rate"]),
            int(d["channels"]),
        )


@dataclass(frozen=True)
class SentenceResult:
    """One sentence with both modalities: text emotion (and its sequence) and audio emotion."""

    sentence: Sentence
    text_emotion: EmotionScores
    sequence: str
    audio_emotion: EmotionScores
    fused: EmotionScores | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.sentence.to_dict()
        d.update(
            text_emotion=self.text_emotion.to_dict(),
            sequence=self.sequence,
            audio_emotion=self.audio_emotion.to_dict(),
        )
        if self.fused is not None:
            d["fused"] = self.fused.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SentenceResult:
        """The inverse of :meth:`to_dict`; scores come back in the stored (ranked) label order."""
        return cls(
            Sentence.from_dict(d),
            EmotionScores.from_dict(d["text_emotion"]),
            str(d["sequence"]),
            EmotionScores.from_dict(d["audio_emotion"]),
            EmotionScores.from_dict(d["fused"]) if d.get("fused") is not None else None,
        )


@dataclass
class Result:
    """Everything an analysis found about one recording. Times in seconds."""

    source: SourceInfo
    models: dict[str, Provenance]  # which weights, per model (see emoflow.provenance_record)
    settings: dict[str, Any]
    transcript: Transcript
    sentences: list[SentenceResult]
    utterance: AudioEmotion
    timeline: Timeline
    audio_sentences: np.ndarray  # (N, Da)
    text_sentences: np.ndarray  # (N, Dt)
    timings: dict[str, float] = field(default_factory=dict)
    audio_samples: np.ndarray | None = field(default=None, repr=False)  # 16 kHz mono, for the report's player
    # how the voice side was computed: {"span_method": "exact" | "pooled", "dtype": "float32" | ...}
    voice: dict[str, str] = field(default_factory=dict)
    # who spoke when (PipelineConfig(diarize=True)); None: not diarised
    diarization: Diarization | None = None
    # per speaker: talk time, sentences, mean voice and text emotion and their trend
    speakers: tuple[SpeakerSummary, ...] = ()

    @property
    def diarised(self) -> bool:
        return self.diarization is not None

    # ---- views ----------------------------------------------------------------------------
    @property
    def fused_sentences(self) -> np.ndarray:
        """Per sentence: the audio embedding followed by the text embedding, ``(N, Da + Dt)``."""
        return np.concatenate([self.audio_sentences, self.text_sentences], axis=1).astype(np.float32)

    def embeddings(self) -> dict[str, np.ndarray]:
        return {
            "audio_utterance": self.utterance.embedding.astype(np.float32),
            "audio_sentences": self.audio_sentences.astype(np.float32),
            "text_sentences": self.text_sentences.astype(np.float32),
            "fused_sentences": self.fused_sentences,
            "timeline": self.timeline.embeddings.astype(np.float32),
        }

    def to_dict(self) -> dict[str, Any]:
        arrays = {k: list(v.shape) for k, v in self.embeddings().items()}
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source.to_dict(),
            "models": {name: p.to_dict() for name, p in self.models.items()},
            "settings": self.settings,
            # the transcript's own record, without its schema_version (the result's is above)
            "transcript": {k: v for k, v in self.transcript.to_dict().items() if k != "schema_version"},
            "sentences": [s.to_dict() for s in self.sentences],
            "utterance": {"audio_emotion": self.utterance.scores.to_dict()},
            "timeline": self.timeline.to_dict(),
            **({"voice": dict(self.voice)} if self.voice else {}),
            # the diarisation's own record, without its schema_version (the result's is above)
            "diarization": None
            if self.diarization is None
            else {k: v for k, v in self.diarization.to_dict().items() if k != "schema_version"},
            "speakers": [s.to_dict() for s in self.speakers],
            "embeddings": {"file": EMBEDDINGS_FILE, "arrays": arrays},
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], embeddings: Mapping[str, np.ndarray]) -> Result:
        """The inverse of :meth:`to_dict` plus :meth:`embeddings` (the ``embeddings.npz`` arrays).

        ``Result.from_dict(r.to_dict(), r.embeddings())`` has the same ``to_dict()`` and
        ``embeddings()`` as ``r``. Scores come back in the stored (ranked) label order, timings
        as rounded in the JSON; the audio samples (for the report's player) are not stored.
        """
        missing = [
            k
            for k in ("audio_utterance", "audio_sentences", "text_sentences", "timeline")
            if k not in embeddings
        ]
        if missing:
            raise InputError(
                f"the embeddings lack {', '.join(missing)}; pass all arrays of {EMBEDDINGS_FILE}"
            )
        return cls(
            source=SourceInfo.from_dict(d["source"]),
            models={str(name): Provenance.from_dict(p) for name, p in d["models"].items()},
            settings=dict(d["settings"]),
            transcript=Transcript.from_dict(d["transcript"]),
            sentences=[SentenceResult.from_dict(s) for s in d["sentences"]],
            utterance=AudioEmotion(
                EmotionScores.from_dict(d["utterance"]["audio_emotion"]),
                np.asarray(embeddings["audio_utterance"]),
            ),
            timeline=timeline_from_dict(d["timeline"], np.asarray(embeddings["timeline"])),
            audio_sentences=np.asarray(embeddings["audio_sentences"]),
            text_sentences=np.asarray(embeddings["text_sentences"]),
            timings={str(k): float(v) for k, v in d.get("timings_s", {}).items()},
            voice={str(k): str(v) for k, v in d.get("voice", {}).items()},
            diarization=Diarization.from_dict(d["diarization"]) if d.get("diarization") else None,
            speakers=tuple(speaker_summary_from_dict(s) for s in d.get("speakers") or ()),
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Result:
        """A result saved by :meth:`save` with the ``json`` and ``npz`` formats."""
        d = Path(directory)
        for name in ("result.json", EMBEDDINGS_FILE):
            if not (d / name).is_file():
                raise InputError(f"{d}: no {name}; save the result with the json and npz formats")
        try:
            data = json.loads((d / "result.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{d / 'result.json'}: not valid JSON ({e})") from None
        try:
            with np.load(d / EMBEDDINGS_FILE) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(
                f"{d / EMBEDDINGS_FILE}: not readable arrays ({type(e).__name__}: {e})"
            ) from None
        try:
            return cls.from_dict(data, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"{d / 'result.json'}: not an emoflow result ({type(e).__name__}: {e})"
            ) from None

    def sentences_frame(self) -> pd.DataFrame:
        """A pandas DataFrame: one row per sentence with both modalities' top emotions and all
        scores (the export layer's table: :func:`emoflow.export.tables.sentences_table`)."""
        from emoflow.export.tables import sentences_table

        return sentences_table(self)

    def timeline_frame(self) -> pd.DataFrame:
        """A pandas DataFrame: one row per timeline window (:func:`emoflow.export.tables.timeline_table`)."""
        from emoflow.export.tables import timeline_table

        return timeline_table(self)

    # ---- files ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, formats: Iterable[str] = ALL_FORMATS) -> Path:
        """Write the outputs into ``directory`` atomically: all files are written into an
        emoflow temporary folder beside it, which then replaces ``directory`` in one rename."""
        from emoflow.export.writers import save_result

        return save_result(self, directory, formats)


def timeline_from_dict(d: Mapping[str, Any], embeddings: np.ndarray) -> Timeline:
    """The inverse of :meth:`Timeline.to_dict` (the window embeddings are stored apart, in the
    ``timeline`` array of ``embeddings.npz``)."""
    labels = tuple(str(x) for x in d["labels"])
    windows = d["windows"]
    return Timeline(
        str(d["mode"]),
        float(d["window_s"]),
        float(d["hop_s"]),
        labels,
        tuple(TimeSpan(float(w["start"]), float(w["end"])) for w in windows),
        np.asarray([w["scores"] for w in windows], dtype=np.float64).reshape(len(windows), len(labels)),
        embeddings,
    )


def _means(d: Mapping[str, Any] | None) -> dict[str, float] | None:
    return None if d is None else {str(k): float(v) for k, v in d.items()}


def speaker_summary_from_dict(d: Mapping[str, Any]) -> SpeakerSummary:
    """The inverse of :meth:`SpeakerSummary.to_dict` (the dominant emotions and the trend it
    writes are derived from the means, so they are not read back)."""
    return SpeakerSummary(
        speaker=str(d["speaker"]),
        talk_time_s=float(d["talk_time_s"]),
        share=float(d["share"]),
        num_sentences=int(d["num_sentences"]),
        voice_mean=_means(d.get("voice_mean")),
        text_mean=_means(d.get("text_mean")),
        segments=tuple(
            SegmentEmotion(
                TimeSpan(float(g["start"]), float(g["end"])),
                int(g["num_sentences"]),
                _means(g.get("voice_mean")),
                _means(g.get("text_mean")),
            )
            for g in d.get("segments") or ()
        ),
        voice_change=_means(d.get("voice_change")) or {},
        text_change=_means(d.get("text_change")) or {},
    )


def result_schema() -> dict[str, Any]:
    """The JSON Schema that every ``result.json`` validates against."""
    text = resources.files("emoflow.schemas").joinpath("result.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_result(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` is not a valid result."""
    import jsonschema

    jsonschema.validate(data, result_schema())
