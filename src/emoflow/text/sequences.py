"""Emotion sequences (Liapis et al. 2025): a sentence's top-k emotions by probability,
joined as one string, e.g. ``"joy__surprise__neutral"``."""

from __future__ import annotations

from emoflow.config import DEFAULT_SEPARATOR, DEFAULT_TOP_K
from emoflow.errors import ConfigError
from emoflow.types import EmotionScores


def emotion_sequence(
    scores: EmotionScores, k: int = DEFAULT_TOP_K, separator: str = DEFAULT_SEPARATOR
) -> str:
    """The ``k`` most probable labels, most probable first (ties keep the model's label order)."""
    if k < 1:
        raise ConfigError(f"top-k must be at least 1, got {k}")
    return separator.join(label for label, _ in scores.ranked()[:k])


def sequence_tokens(sequence: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    return [t for t in sequence.split(separator) if t]
