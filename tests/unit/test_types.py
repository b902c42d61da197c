import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emoflow.types import (
    EmotionScores,
    Sentence,
    TimeSpan,
    Transcript,
    Word,
    seconds_to_samples,
    sentences_from_dict,
    sentences_to_dict,
)


def test_timespan_rejects_bad_values():
    for a, b in [(1.0, 0.5), (-0.1, 1.0), (math.nan, 1.0), (0.0, math.inf)]:
        with pytest.raises(ValueError):
            TimeSpan(a, b)


def test_timespan_is_frozen():
    span = TimeSpan(1.0, 2.0)
    with pytest.raises(AttributeError):
        span.start = 0.0  # type: ignore[misc]


@given(st.floats(0, 100), st.floats(0, 10), st.floats(0, 100), st.floats(0, 10))
def test_intersection_and_overlap_agree(a, da, b, db):
    x, y = TimeSpan(a, a + da), TimeSpan(b, b + db)
    inter = x.intersection(y)
    assert (inter is not None and inter.duration > 0) == x.overlaps(y)
    assert x.overlap_duration(y) == pytest.approx(inter.duration if inter else 0.0)


def test_seconds_to_samples_rounds_to_nearest():
    assert seconds_to_samples(1.0, 16000) == 16000
    assert seconds_to_samples(0.00003, 16000) == 0
    assert seconds_to_samples(0.00004, 16000) == 1


def test_transcript_and_sentences_round_trip_json():
    words = (Word("Hello", TimeSpan(0.0, 0.4), 0.9), Word("there.", TimeSpan(0.4, 0.9)))
    t = Transcript(words, "en")
    assert t.text == "Hello there."
    back = Transcript.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t
    s = [Sentence(0, "Hello there.", TimeSpan(0.0, 0.9), words)]
    d = json.loads(json.dumps(sentences_to_dict(s)))
    assert d["schema_version"]
    assert sentences_from_dict(d)[0].span == s[0].span


def test_emotion_scores_ranked():
    e = EmotionScores(("a", "b", "c"), (0.2, 0.5, 0.3))
    assert e.top == "b"
    assert e.to_dict()["labels"] == ["b", "c", "a"]
