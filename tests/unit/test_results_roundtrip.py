"""Round trips of the result types (issue 10.5): ``Result`` and its parts come back from their
JSON form (plus the embeddings arrays) with nothing lost, word probabilities included."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoflow.errors import InputError
from emoflow.provenance import Provenance
from emoflow.results import Result, SentenceResult, SourceInfo, validate_result
from emoflow.types import AudioEmotion, EmotionScores, Sentence, Timeline, TimeSpan, Transcript, Word

# sizes that differ from one another: audio width, text width, timeline embedding width
DA, DT, DTL = 6, 4, 5
AUDIO_LABELS = ("angry", "happy", "neutral", "sad", "surprised")
TEXT_LABELS = ("anger", "joy", "neutral")

times = st.floats(0, 3600, allow_nan=False, allow_infinity=False)
spans = st.tuples(times, times).map(lambda p: TimeSpan(min(p), max(p)))
probabilities = st.none() | st.floats(0, 1)
words = st.builds(Word, st.text(max_size=8), spans, probabilities)


def scores_over(labels: tuple[str, ...]) -> st.SearchStrategy[EmotionScores]:
    return st.lists(st.floats(0, 1), min_size=len(labels), max_size=len(labels)).map(
        lambda xs: EmotionScores(labels, tuple(xs))
    )


def arrays(rows: int, cols: int) -> st.SearchStrategy[np.ndarray]:
    """float32 arrays, drawn from a seed (element-wise drawing is slow and adds nothing here)."""
    return st.integers(0, 2**32 - 1).map(
        lambda seed: (np.random.default_rng(seed).standard_normal((rows, cols)) * 100).astype(np.float32)
    )


def probability_rows(rows: int, cols: int) -> st.SearchStrategy[np.ndarray]:
    return st.integers(0, 2**32 - 1).map(
        lambda seed: np.random.default_rng(seed).dirichlet(np.ones(cols), rows).astype(np.float32)
    )


provenances = st.builds(
    Provenance,
    st.text(max_size=10),
    st.none() | st.text(max_size=8),
    st.none() | st.text(max_size=8),
    st.sampled_from(["hub", "local", "package", "given"]),
    st.dictionaries(
        st.sampled_from(["backend", "pooling", "method", "path"]), st.text(max_size=8), max_size=2
    ),
)
sentence_results = st.builds(
    SentenceResult,
    st.builds(
        Sentence, st.integers(0, 50), st.text(max_size=20), spans, st.lists(words, max_size=3).map(tuple)
    ),
    scores_over(TEXT_LABELS),
    st.text(min_size=1, max_size=20),
    scores_over(AUDIO_LABELS),
    st.none() | scores_over(("a", "b")),
)
sources = st.builds(
    SourceInfo,
    st.none() | st.text(max_size=20),
    st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    st.floats(0.01, 3600),
    st.integers(1, 192_000),
    st.integers(1, 8),
)


@st.composite
def results(draw: st.DrawFn) -> Result:
    n = draw(st.integers(0, 3))
    w = draw(st.integers(1, 4))
    tl_spans = tuple(draw(st.lists(spans, min_size=w, max_size=w)))
    timeline = Timeline(
        draw(st.sampled_from(["exact", "pooled"])),
        draw(st.floats(0.5, 10)),
        draw(st.floats(0.1, 5)),
        AUDIO_LABELS,
        tl_spans,
        draw(probability_rows(w, len(AUDIO_LABELS))),
        draw(arrays(w, DTL)),
    )
    return Result(
        source=draw(sources),
        models={
            stage: draw(provenances) for stage in ("asr", "audio_emotion", "text_emotion", "sequence_encoder")
        },
        settings={"top_k": draw(st.integers(1, 7)), "separator": "__"},
        transcript=Transcript(
            tuple(draw(st.lists(words, max_size=4))),
            draw(st.none() | st.sampled_from(["en", "de"])),
            draw(st.text(max_size=20)),
        ),
        sentences=draw(st.lists(sentence_results, min_size=n, max_size=n)),
        utterance=AudioEmotion(draw(scores_over(AUDIO_LABELS)), draw(arrays(1, DA))[0]),
        timeline=timeline,
        audio_sentences=draw(arrays(n, DA)),
        text_sentences=draw(arrays(n, DT)),
        timings={
            k: draw(st.floats(0, 100)) for k in draw(st.lists(st.sampled_from(["asr", "audio"]), unique=True))
        },
    )


def assert_same(a: Result, b: Result) -> None:
    assert a.to_dict() == b.to_dict()
    ea, eb = a.embeddings(), b.embeddings()
    assert ea.keys() == eb.keys()
    for k in ea:
        np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results())
def test_result_round_trips_through_json_and_its_arrays(r):
    d = json.loads(r.to_json())
    back = Result.from_dict(d, r.embeddings())
    assert_same(back, r)
    assert_same(Result.from_dict(json.loads(back.to_json()), back.embeddings()), r)
    # the word probabilities are in result.json, and it still validates
    assert [w.get("probability") for w in d["transcript"]["words"]] == [
        w.probability for w in r.transcript.words
    ]
    validate_result(d)


@given(sentence_results)
def test_sentence_result_round_trip(s):
    back = SentenceResult.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.sentence == s.sentence and back.sequence == s.sequence
    assert back.to_dict() == s.to_dict()
    assert back.audio_emotion.as_mapping() == s.audio_emotion.as_mapping()
    assert (back.fused is None) == (s.fused is None)


@given(sources)
def test_source_info_round_trip(src):
    assert SourceInfo.from_dict(json.loads(json.dumps(src.to_dict()))) == src


def fixed_result() -> Result:
    rng = np.random.default_rng(3)
    words = (Word("Hello", TimeSpan(0.1, 0.5), 0.93), Word("there.", TimeSpan(0.5, 0.9)))
    sentence = Sentence(0, "Hello there.", TimeSpan(0.1, 0.9), words)
    text = EmotionScores(TEXT_LABELS, (0.2, 0.7, 0.1))
    audio = EmotionScores(AUDIO_LABELS, (0.1, 0.4, 0.3, 0.15, 0.05))
    return Result(
        source=SourceInfo("a.wav", "ab" * 32, 1.25, 16000, 1),
        models={
            "asr": Provenance("precomputed transcript", None, source="given"),
            "audio_emotion": Provenance("org/audio", "0" * 40, "main"),
            "text_emotion": Provenance("/models/text", "sha256:" + "ab" * 32, source="local"),
            "sequence_encoder": Provenance(
                "org/enc", None, options={"method": "extraction", "pooling": "cls"}
            ),
        },
        settings={"top_k": 2},
        transcript=Transcript(words, "en"),
        sentences=[
            SentenceResult(sentence, text, "joy__anger", audio, EmotionScores(("a", "b"), (0.25, 0.75)))
        ],
        utterance=AudioEmotion(audio, rng.standard_normal(DA).astype(np.float32)),
        timeline=Timeline(
            "exact",
            1.0,
            0.5,
            AUDIO_LABELS,
            (TimeSpan(0.0, 1.0), TimeSpan(0.5, 1.25)),
            rng.dirichlet(np.ones(len(AUDIO_LABELS)), 2).astype(np.float32),
            rng.standard_normal((2, DTL)).astype(np.float32),
        ),
        audio_sentences=rng.standard_normal((1, DA)).astype(np.float32),
        text_sentences=rng.standard_normal((1, DT)).astype(np.float32),
        timings={"asr": 0.5},
    )


def test_result_save_and_load(tmp_path):
    r = fixed_result()
    r.save(tmp_path / "out", formats=("json", "npz"))
    back = Result.load(tmp_path / "out")
    assert_same(back, r)
    assert back.transcript == r.transcript and back.sentences[0].sentence == r.sentences[0].sentence
    (tmp_path / "out" / "embeddings.npz").write_bytes(b"PK\x03\x04 not a zip")  # corrupt arrays
    with pytest.raises(InputError, match="embeddings.npz: not readable"):
        Result.load(tmp_path / "out")
    (tmp_path / "out" / "embeddings.npz").unlink()
    with pytest.raises(InputError, match="embeddings.npz"):
        Result.load(tmp_path / "out")


def test_models_and_transcript_keep_their_json_form():
    """Each model's record is written by Provenance.to_dict (settings first, then the core fields);
    the transcript by Transcript.to_dict, without a schema_version of its own."""
    d = fixed_result().to_dict()
    assert d["models"]["audio_emotion"] == {
        "id": "org/audio",
        "revision": "0" * 40,
        "requested_revision": "main",
        "source": "hub",
    }
    assert list(d["models"]["sequence_encoder"]) == [
        "method",
        "pooling",
        "id",
        "revision",
        "requested_revision",
        "source",
    ]
    assert d["models"]["asr"]["source"] == "given" and d["models"]["asr"]["revision"] is None
    assert list(d["transcript"]) == ["text", "language", "words"]
    validate_result(d)
