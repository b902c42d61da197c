"""One recording in flight through the pipeline's stages: the :class:`Work` record.

Each stage of :class:`~emoflow.pipeline.Pipeline` fills in part of a :class:`Work`; the record
is picklable, so the batch engines (local and Ray) and the service run the same stages, in
one process or several.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emoflow.audio.io import Audio, AudioSource
from emoflow.diarization.types import Diarization
from emoflow.results import SourceInfo
from emoflow.types import AudioEmotion, EmotionScores, Sentence, Timeline, TimeSpan, Transcript

STAGES = (
    "decode",
    "vad",
    "asr",
    "sentences",
    "diarize",  # only with PipelineConfig(diarize=True)
    "text_emotion",
    "sequence_embedding",
    "audio_emotion",
    "assemble",
)
MODEL_STAGES = frozenset({"vad", "asr", "diarize", "text_emotion", "sequence_embedding", "audio_emotion"})
Progress = Callable[[str], None]
TranscriptSource = str | os.PathLike[str] | Transcript  # a transcript file, or one already read


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Work:
    """One recording in flight through the stages (picklable, so stages may run in other processes)."""

    source: AudioSource | Audio
    transcript_in: TranscriptSource | None = None
    timings: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = field(default=None, repr=False)
    audio: Audio | None = None
    info: SourceInfo | None = None
    speech: list[TimeSpan] = field(default_factory=list)
    transcript: Transcript | None = None
    sentences: list[Sentence] = field(default_factory=list)
    diarization: Diarization | None = None  # who spoke when (only when diarised)
    text_scores: list[EmotionScores] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    text_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    audio_scores: list[EmotionScores] = field(default_factory=list)
    audio_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    utterance: AudioEmotion | None = None
    timeline: Timeline | None = None
    voice: dict[str, str] = field(default_factory=dict)  # how the voice side was computed

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name)
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def need_audio(self) -> Audio:
        if self.audio is None:
            raise RuntimeError("stage_decode must run first")
        return self.audio

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["progress"] = None  # callbacks stay in their process
        return state
