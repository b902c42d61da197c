"""What a live session emits: typed events, each with its one ``to_dict`` (the JSON sent over
the WebSocket and printed by ``emoflow stream``).

* :class:`WindowEvent` — one timeline window (same grid, window and hop as ``analyze``), once
  its last sample has arrived;
* :class:`SentenceEvent` — the sentences of a speech region, once the VAD closed it;
* :class:`EndEvent` — the summary and the whole :class:`~emoflow.results.Result`.

``lag_s`` on every event: seconds from the arrival of the audio that completed it (its last
sample, or the end-of-speech silence that closed the region) to the event. It grows when the
models fall behind the audio; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from emoflow.types import EmotionScores, TimeSpan

if TYPE_CHECKING:
    from emoflow.results import Result, SentenceResult

EventType = Literal["window", "sentence", "end"]


def scores_dict(scores: EmotionScores) -> dict[str, float]:
    """``{label: score}`` in the model's label order (empty for an encoder without a head)."""
    return {k: round(float(v), 6) for k, v in zip(scores.labels, scores.scores, strict=True)}


@dataclass(frozen=True)
class WindowEvent:
    """Window ``index`` of the timeline: the voice scores of ``span`` (exact or pooled, as the
    timeline's mode) and its embedding."""

    index: int
    span: TimeSpan
    scores: EmotionScores
    embedding: np.ndarray = field(repr=False)
    lag_s: float = 0.0
    type: EventType = "window"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "index": self.index,
            "start": self.span.start,
            "end": self.span.end,
            "top": self.scores.top if self.scores.labels else None,
            "scores": scores_dict(self.scores),
            "lag_s": round(self.lag_s, 4),
        }


@dataclass(frozen=True)
class SentenceEvent:
    """The sentences of one closed speech region (``region``): each with its refined times, text,
    text emotion, emotion sequence and the voice emotion of its span."""

    region: TimeSpan
    sentences: tuple[SentenceResult, ...]
    lag_s: float = 0.0
    type: EventType = "sentence"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "region": self.region.to_list(),
            "sentences": [s.to_dict() for s in self.sentences],
            "lag_s": round(self.lag_s, 4),
        }


@dataclass(frozen=True)
class EndEvent:
    """The stream closed: a summary and the whole result (``result.save(dir)`` as ``analyze``)."""

    summary: dict[str, Any]
    result: Result = field(repr=False)
    lag_s: float = 0.0
    type: EventType = "end"

    def to_dict(self, with_result: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "summary": self.summary, "lag_s": round(self.lag_s, 4)}
        if with_result:
            d["result"] = self.result.to_dict()
        return d


Event = WindowEvent | SentenceEvent | EndEvent
