"""Voice scores for an encoder without a classification head, from a trained fusion model.

A bare wav2vec2, WavLM or Whisper encoder gives embeddings and no scores ("no voice scores");
an ``audio-only`` fusion model trained on its embeddings scores them (moved here from
:meth:`emoflow.pipeline.Pipeline.stage_audio`, unchanged).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from emoflow.types import AudioEmotion, EmotionScores, VoiceAnalysis

if TYPE_CHECKING:
    from emoflow.fusion.train import FusionClassifier


def voice_scores(
    fusion: FusionClassifier | None, scored: EmotionScores, embeddings: list[np.ndarray]
) -> list[EmotionScores] | None:
    """Scores of voice ``embeddings`` from ``fusion`` when the encoder gave none (``scored``: one
    of its results, empty labels) and the fusion model scores voices; else ``None`` (keep the
    encoder's). The one rule for analyze's voice side and a live stream's windows and sentences."""
    if not embeddings or scored.labels or fusion is None or not fusion.scores_voice:
        return None
    probs = fusion.voice_probabilities(np.stack(embeddings))
    return [EmotionScores(fusion.labels, tuple(float(x) for x in row)) for row in probs]


def voice_from_fusion(voice: VoiceAnalysis, fusion: FusionClassifier | None) -> VoiceAnalysis:
    """``voice`` with scores from ``fusion`` where the encoder gave none and the fusion model
    scores voices; otherwise ``voice`` unchanged."""
    items = [*voice.spans, voice.utterance]
    scores = voice_scores(fusion, voice.utterance.scores, [a.embedding for a in items])
    if scores is None or fusion is None:
        return voice
    labels = fusion.labels
    t = voice.timeline
    t_scores = voice_scores(fusion, voice.utterance.scores, list(t.embeddings)) or []
    t_probs = np.array([x.scores for x in t_scores], np.float32).reshape(len(t_scores), len(labels))
    scored = [AudioEmotion(sc, a.embedding) for a, sc in zip(items, scores, strict=True)]
    return replace(
        voice,
        spans=tuple(scored[:-1]),
        utterance=scored[-1],
        timeline=replace(t, labels=labels, scores=t_probs),
    )
