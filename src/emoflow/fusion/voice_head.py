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


def voice_from_fusion(voice: VoiceAnalysis, fusion: FusionClassifier | None) -> VoiceAnalysis:
    """``voice`` with scores from ``fusion`` where the encoder gave none and the fusion model
    scores voices; otherwise ``voice`` unchanged."""
    if voice.utterance.scores.labels or fusion is None or not fusion.scores_voice:
        return voice
    labels = fusion.labels

    def scored(a: AudioEmotion, row: np.ndarray) -> AudioEmotion:
        return AudioEmotion(EmotionScores(labels, tuple(float(x) for x in row)), a.embedding)

    items = [*voice.spans, voice.utterance]
    probs = fusion.voice_probabilities(np.stack([a.embedding for a in items]))
    t = voice.timeline
    t_probs = (
        fusion.voice_probabilities(t.embeddings)
        if len(t.embeddings)
        else np.zeros((0, len(labels)), np.float32)
    )
    return replace(
        voice,
        spans=tuple(scored(a, p) for a, p in zip(voice.spans, probs[:-1], strict=True)),
        utterance=scored(voice.utterance, probs[-1]),
        timeline=replace(t, labels=labels, scores=np.asarray(t_probs, np.float32)),
    )
