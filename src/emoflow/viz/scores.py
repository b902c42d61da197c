"""Emotion scores as the plots and the report show them, including none at all.

A voice encoder without a classification head (a bare wav2vec2, WavLM or Whisper encoder,
:mod:`emoflow.speech.transformers_audio`) gives embeddings and no voice scores: empty
:class:`~emoflow.types.EmotionScores` and a ``(W, 0)`` timeline. The plots and the report then
say so (:data:`NO_VOICE_SCORES`) instead of drawing nothing or failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emoflow.results import Result
    from emoflow.types import EmotionScores

NO_VOICE_SCORES_SHORT = "no voice scores"
NO_VOICE_SCORES = (
    "no voice scores (this voice model has no classification head; train an audio-only fusion "
    "model with `emoflow train --ablation audio-only` and pass --fusion-model)"
)


def has_scores(scores: EmotionScores | None) -> bool:
    return scores is not None and len(scores.labels) > 0


def top(scores: EmotionScores | None) -> str | None:
    """The top label, or ``None`` for empty scores."""
    return scores.top if scores is not None and has_scores(scores) else None


def top_score(scores: EmotionScores | None) -> float | None:
    return max(scores.scores) if scores is not None and has_scores(scores) else None


def has_voice_scores(result: Result) -> bool:
    """Whether the voice side has emotion scores anywhere (timeline, utterance or a sentence)."""
    return (
        len(result.timeline.labels) > 0
        or has_scores(result.utterance.scores)
        or any(has_scores(s.audio_emotion) for s in result.sentences)
    )
