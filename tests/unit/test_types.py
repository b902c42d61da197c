import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.types import (
    MAX_TIME_S,
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


# ---- bounds and round trips (issues 10.5, 11.9) -------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end"), [(0.0, 1e308), (0.0, 3e307), (1e308, 1e308), (0.0, MAX_TIME_S * 1.5), (0.0, -math.inf)]
)
def test_timespan_rejects_times_beyond_the_largest(start, end):
    with pytest.raises(ValueError, match="TimeSpan"):
        TimeSpan(start, end)


def test_timespan_accepts_the_largest_time_and_its_arithmetic_stays_finite():
    span = TimeSpan(MAX_TIME_S, MAX_TIME_S)
    assert math.isfinite(span.middle) and span.duration == 0


def test_word_and_transcript_reject_non_finite_times_and_probabilities():
    for bad in (
        {"start": math.nan, "end": 1.0},
        {"start": 0.0, "end": math.inf},
        {"start": 0.0, "end": 1e308},
    ):
        with pytest.raises(ValueError):
            Word.from_dict({"text": "hi", **bad})
    with pytest.raises(ValueError, match="probability"):
        Word("hi", TimeSpan(0.0, 0.5), math.nan)
    with pytest.raises(ValueError):
        Transcript.from_dict({"words": [{"text": "hi", "start": 0.0, "end": 3e307}]})


times = st.floats(0, MAX_TIME_S, allow_nan=False, allow_infinity=False)
spans = st.tuples(times, times).map(lambda p: TimeSpan(min(p), max(p)))
probabilities = st.none() | st.floats(allow_nan=False, allow_infinity=False)
words = st.builds(Word, st.text(max_size=12), spans, probabilities)
word_runs = st.lists(words, max_size=6).map(tuple)
sentences = st.builds(Sentence, st.integers(0, 10_000), st.text(max_size=30), spans, word_runs)


def via_json(d):
    """What a file gives back: the dict written as JSON and read again."""
    return json.loads(json.dumps(d, ensure_ascii=False))


@given(spans)
def test_timespan_round_trip(span):
    assert TimeSpan.from_list(via_json(span.to_list())) == span


@given(words)
def test_word_round_trip(word):
    assert Word.from_dict(via_json(word.to_dict())) == word


@given(word_runs, st.none() | st.text(min_size=1, max_size=5), st.text(max_size=40))
def test_transcript_round_trip(ws, language, text):
    t = Transcript(ws, language, text)
    assert Transcript.from_dict(via_json(t.to_dict())) == t


@given(st.lists(sentences, max_size=4))
def test_sentences_round_trip_keep_word_probabilities(ss):
    assert sentences_from_dict(via_json(sentences_to_dict(ss))) == ss


def test_sentence_round_trip_keeps_word_probabilities_example():
    words = (Word("Hello", TimeSpan(0.0, 0.4), 0.91), Word("there.", TimeSpan(0.4, 0.9), 0.37))
    s = [Sentence(0, "Hello there.", TimeSpan(0.0, 0.9), words)]
    back = sentences_from_dict(via_json(sentences_to_dict(s)))
    assert [w.probability for w in back[0].words] == [0.91, 0.37] and back == s


emotion_scores = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.floats(0, 1)),
    min_size=1,
    max_size=8,
    unique_by=lambda p: p[0],
).map(lambda pairs: EmotionScores(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)))


@settings(max_examples=60)
@given(emotion_scores)
def test_emotion_scores_round_trip(e):
    assert EmotionScores.from_dict(via_json(e.to_dict(sort=False))) == e
    ranked = EmotionScores.from_dict(via_json(e.to_dict()))  # the ranked form result.json stores
    assert ranked.as_mapping() == e.as_mapping() and ranked.ranked() == e.ranked()
