"""The result says how its voice side was computed (issue 16.2): ``voice`` is written to
``result.json``, validates against the schema and survives a round trip."""

from __future__ import annotations

import dataclasses

import jsonschema
import numpy as np
import pytest

from emoflow.provenance import Provenance
from emoflow.results import Result, SourceInfo, validate_result
from emoflow.types import AudioEmotion, EmotionScores, Timeline, TimeSpan, Transcript

LABELS = ("angry", "happy", "neutral", "sad")


def small_result(**changes) -> Result:
    rng = np.random.default_rng(5)
    scores = EmotionScores(LABELS, (0.1, 0.5, 0.3, 0.1))
    r = Result(
        source=SourceInfo(None, None, 2.5, 16000, 1),
        models={s: Provenance(s, None) for s in ("asr", "audio_emotion", "text_emotion", "sequence_encoder")},
        settings={},
        transcript=Transcript((), "en"),
        sentences=[],
        utterance=AudioEmotion(scores, rng.standard_normal(6).astype(np.float32)),
        timeline=Timeline(
            "pooled",
            2.0,
            1.0,
            LABELS,
            (TimeSpan(0.0, 2.0), TimeSpan(1.0, 2.5)),
            rng.dirichlet(np.ones(len(LABELS)), 2).astype(np.float32),
            rng.standard_normal((2, 6)).astype(np.float32),
        ),
        audio_sentences=np.zeros((0, 6), np.float32),
        text_sentences=np.zeros((0, 3), np.float32),
    )
    return dataclasses.replace(r, **changes)


def test_voice_is_written_validated_and_read_back():
    voice = {"span_method": "pooled", "dtype": "bfloat16"}
    r = small_result(voice=voice)
    d = r.to_dict()
    assert d["voice"] == voice
    validate_result(d)
    back = Result.from_dict(d, r.embeddings())
    assert back.voice == voice and back.to_dict() == d


def test_results_without_voice_stay_valid_and_bad_values_are_refused():
    d = small_result().to_dict()
    assert "voice" not in d  # results built elsewhere (older files, tests) are unchanged
    validate_result(d)
    with pytest.raises(jsonschema.ValidationError):
        validate_result({**d, "voice": {"span_method": "approximate", "dtype": "float32"}})
    with pytest.raises(jsonschema.ValidationError):
        validate_result({**d, "voice": {"span_method": "exact", "dtype": "int8"}})
