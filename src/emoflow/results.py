"""The typed result of an analysis, its JSON form (with a JSON Schema) and its files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.speech.emotion2vec import AudioEmotion, Timeline
from emoflow.types import SCHEMA_VERSION, EmotionScores, Sentence, Transcript

ALL_FORMATS = ("json", "npz", "csv", "srt", "png", "html")
EMBEDDINGS_FILE = "embeddings.npz"


@dataclass(frozen=True)
class SourceInfo:
    path: str | None
    sha256: str | None
    duration_s: float
    sample_rate: int
    channels: int


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


@dataclass
class Result:
    """Everything an analysis found about one recording. Times in seconds."""

    source: SourceInfo
    models: dict[str, Any]
    settings: dict[str, Any]
    transcript: Transcript
    sentences: list[SentenceResult]
    utterance: AudioEmotion
    timeline: Timeline
    audio_sentences: np.ndarray  # (N, Da)
    text_sentences: np.ndarray  # (N, Dt)
    timings: dict[str, float] = field(default_factory=dict)
    audio_samples: np.ndarray | None = field(default=None, repr=False)  # 16 kHz mono, for the report's player

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
            "source": vars(self.source).copy(),
            "models": self.models,
            "settings": self.settings,
            "transcript": {
                "text": self.transcript.text,
                "language": self.transcript.language,
                "words": [{"text": w.text, "start": w.start, "end": w.end} for w in self.transcript.words],
            },
            "sentences": [s.to_dict() for s in self.sentences],
            "utterance": {"audio_emotion": self.utterance.scores.to_dict()},
            "timeline": self.timeline.to_dict(),
            "embeddings": {"file": EMBEDDINGS_FILE, "arrays": arrays},
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    def sentences_frame(self) -> Any:
        """A pandas DataFrame: one row per sentence with both modalities' top emotions and all scores."""
        import pandas as pd

        rows = []
        for s in self.sentences:
            row: dict[str, Any] = {
                "index": s.sentence.index,
                "start": s.sentence.start,
                "end": s.sentence.end,
                "text": s.sentence.text,
                "sequence": s.sequence,
                "text_top": s.text_emotion.top,
                "audio_top": s.audio_emotion.top,
            }
            if s.fused is not None:
                row["fused_top"] = s.fused.top
            row.update({f"text_{k}": v for k, v in s.text_emotion.as_mapping().items()})
            row.update({f"audio_{k}": v for k, v in s.audio_emotion.as_mapping().items()})
            rows.append(row)
        cols = ["index", "start", "end", "text", "sequence", "text_top", "audio_top"]
        return pd.DataFrame(rows, columns=None if rows else cols)

    def timeline_frame(self) -> Any:
        import pandas as pd

        tl = self.timeline
        df = pd.DataFrame(tl.scores, columns=list(tl.labels))
        df.insert(0, "end", [s.end for s in tl.spans])
        df.insert(0, "start", [s.start for s in tl.spans])
        return df

    # ---- files ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, formats: Iterable[str] = ALL_FORMATS) -> Path:
        """Write the outputs into ``directory`` atomically: all files are written into a
        temporary sibling directory which then replaces ``directory`` in one rename."""
        from emoflow.export.writers import write_outputs

        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            write_outputs(self, tmp, set(formats))
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


def result_schema() -> dict[str, Any]:
    """The JSON Schema that every ``result.json`` validates against."""
    text = resources.files("emoflow.schemas").joinpath("result.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_result(data: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` is not a valid result."""
    import jsonschema

    jsonschema.validate(data, result_schema())
