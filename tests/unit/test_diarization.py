"""Diarisation without models: types and RTTM, validation, speakers on words and sentences,
the per-speaker summary, clustering on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.diarization import (
    Diarization,
    SpeakerTurn,
    assign_speakers,
    check_speaker_count,
    make_diarizer,
    speaker_summary,
    split_sentences_at_speakers,
)
from emoflow.diarization.clustering import cluster_speakers
from emoflow.diarization.types import relabel_by_first_appearance, rttm_to_turns
from emoflow.errors import ConfigError
from emoflow.types import Sentence, TimeSpan, Word, join_words


def turn(a: float, b: float, s: str) -> SpeakerTurn:
    return SpeakerTurn(TimeSpan(a, b), s)


def word(text: str, a: float, b: float) -> Word:
    return Word(text, TimeSpan(a, b))


# ---- types and RTTM ---------------------------------------------------------------------------


def test_from_turns_sorts_and_labels_by_first_appearance():
    d = Diarization.from_turns([turn(5, 6, "bob"), turn(0, 2, "alice"), turn(3, 4, "bob")], {"backend": "x"})
    assert d.speakers == ("SPEAKER_00", "SPEAKER_01")
    assert [(t.start, t.speaker) for t in d.turns] == [
        (0, "SPEAKER_00"),
        (3, "SPEAKER_01"),
        (5, "SPEAKER_01"),
    ]
    assert d.talk_time() == {"SPEAKER_00": 2.0, "SPEAKER_01": 2.0}
    assert d.speaker_at(3.5) == "SPEAKER_01" and d.speaker_at(2.5) is None


def test_rttm_round_trip_and_dict_round_trip():
    d = Diarization.from_turns([turn(0.5, 2.25, "a"), turn(2.0, 4.125, "b"), turn(5, 6, "a")])
    text = d.to_rttm("conv1")
    assert text.splitlines()[0] == "SPEAKER conv1 1 0.500 1.750 <NA> <NA> SPEAKER_00 <NA> <NA>"
    back = Diarization.from_rttm(text)
    assert back.turns == d.turns and back.speakers == d.speakers
    other = "SPEAKER other 1 0.000 1.000 <NA> <NA> X <NA> <NA>\n;; comment\n"
    assert Diarization.from_rttm(text + other, file_id="conv1").turns == d.turns
    assert Diarization.from_dict(d.to_dict()) == d
    assert Diarization.from_turns([]).to_rttm("f") == ""


@pytest.mark.parametrize(
    "bad", ["SPEAKER f 1 0.0 <NA> <NA> <NA> A <NA> <NA>", "SPEAKER f 1 0 -1 <NA> <NA> A", "SPEAKER f 1 0 1"]
)
def test_rttm_reader_rejects_bad_lines(bad):
    with pytest.raises(ValueError):
        rttm_to_turns(bad)


def test_turn_and_rttm_validation():
    with pytest.raises(ValueError):
        SpeakerTurn(TimeSpan(0, 1), "two words")
    with pytest.raises(ValueError):
        Diarization.from_turns([turn(0, 1, "a")]).to_rttm("has space")
    with pytest.raises(ValueError):
        Diarization((turn(0, 1, "a"),), ("b",))
    assert SpeakerTurn.from_dict(turn(1, 2, "a").to_dict()) == turn(1, 2, "a")


@given(
    st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 10), st.sampled_from(["x", "y", "z"])),
        min_size=0,
        max_size=12,
    )
)
@settings(max_examples=60, deadline=None)
def test_rttm_round_trip_property(raw):
    turns = [turn(round(a, 3), round(a + d, 3), s) for a, d, s in raw]
    d = Diarization.from_turns(turns)
    back = Diarization.from_rttm(d.to_rttm("f"))
    assert [(t.speaker, t.start) for t in back.turns] == [(t.speaker, t.start) for t in d.turns]
    assert all(abs(a.end - b.end) <= 1e-3 for a, b in zip(back.turns, d.turns))
    relabelled = relabel_by_first_appearance(turns)
    assert [t.speaker for t in relabelled][:1] in ([], ["SPEAKER_00"])


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_speakers": 0},
        {"num_speakers": -2},
        {"min_speakers": 0},
        {"max_speakers": -1},
        {"min_speakers": 3, "max_speakers": 2},
        {"num_speakers": 4, "max_speakers": 3},
        {"num_speakers": 2.5},
        {"num_speakers": True},
    ],
)
def test_bad_speaker_counts_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        check_speaker_count(**kwargs)


def test_speaker_count_bounds():
    assert check_speaker_count().bounds() == (1, 8)
    assert check_speaker_count(num_speakers=3).bounds() == (3, 3)
    assert check_speaker_count(min_speakers=2, max_speakers=4).bounds() == (2, 4)
    assert check_speaker_count(min_speakers=10).bounds() == (10, 10)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError):
        make_diarizer("nope")


# ---- assign_speakers --------------------------------------------------------------------------


def test_assign_speakers_overlap_nearest_and_dominant():
    turns = [turn(0, 2, "A"), turn(2, 4, "B"), turn(3.5, 6, "C"), turn(8, 9, "A")]
    words = [
        word("in-a", 0.5, 1.0),
        word("straddle", 1.8, 2.6),  # 0.2 s in A, 0.6 s in B
        word("overlap", 3.6, 4.0),  # B and C both cover 0.4 s: B appeared first
        word("mostly-c", 3.8, 4.6),  # B 0.2, C 0.8
        word("gap", 6.5, 6.8),  # no turn: nearest is C (0.5 s away) not A (1.2 s)
        word("point", 8.5, 8.5),  # zero-length inside A
        word("late", 20, 21),  # after everything: nearest is the last A
    ]
    assert assign_speakers(words, turns) == ["A", "B", "B", "C", "C", "A", "A"]
    assert assign_speakers(words, []) == [None] * len(words)
    assert assign_speakers([], turns) == []


spans = st.tuples(st.floats(0, 50, allow_nan=False), st.floats(0, 5, allow_nan=False)).map(
    lambda p: TimeSpan(p[0], p[0] + p[1])
)


@given(
    st.lists(st.tuples(spans, st.sampled_from(["A", "B", "C"])), min_size=1, max_size=10),
    st.lists(spans, max_size=20),
    st.randoms(use_true_random=False),
)
@settings(max_examples=100, deadline=None)
def test_assign_speakers_properties(raw_turns, word_spans, rnd):
    turns = [SpeakerTurn(sp, s) for sp, s in raw_turns]
    words = [Word(f"w{i}", sp) for i, sp in enumerate(word_spans)]
    got = assign_speakers(words, turns)
    assert len(got) == len(words)
    assert set(got) <= {t.speaker for t in turns}
    shuffled = list(turns)
    rnd.shuffle(shuffled)
    assert assign_speakers(words, shuffled) == got  # the order turns come in does not matter
    for w, s in zip(words, got):
        covering = {t.speaker for t in turns if t.span.overlaps(w.span)}
        if len(covering) == 1:  # one speaker overlaps the word: it is theirs
            assert s == covering.pop()
        if w.span.duration > 0:
            cover = {
                sp: sum(t.span.overlap_duration(w.span) for t in turns if t.speaker == sp) for sp in covering
            }
            if cover:
                assert cover[s] == pytest.approx(max(cover.values()))  # the dominant speaker


# ---- split_sentences_at_speakers ---------------------------------------------------------------


def sentence(i: int, words: list[Word]) -> Sentence:
    return Sentence(i, join_words(words), TimeSpan(words[0].start, words[-1].end), tuple(words))


def test_split_at_speaker_change_and_reindex():
    w1 = [word("Hello", 0, 0.5), word("there", 0.6, 1.0), word("Hi", 1.2, 1.5), word("you", 1.6, 2.0)]
    w2 = [word("Fine", 3, 3.5), word("thanks", 3.6, 4.0)]
    s1 = Sentence(0, join_words(w1), TimeSpan(0.0, 2.1), tuple(w1))  # a refined end beyond the last word
    s2 = sentence(1, w2)
    out = split_sentences_at_speakers([s1, s2], ["A", "A", "B", "B", "A", "A"])
    assert [(s.index, s.text, sp) for s, sp in out] == [
        (0, "Hello there", "A"),
        (1, "Hi you", "B"),
        (2, "Fine thanks", "A"),
    ]
    assert out[0][0].span == TimeSpan(0.0, 1.0) and out[1][0].span == TimeSpan(1.2, 2.1)
    assert out[2][0] == Sentence(2, s2.text, s2.span, s2.words)
    # None never splits; a one-word flip can be merged away
    assert len(split_sentences_at_speakers([s1], ["A", None, "A", "A"])) == 1
    merged = split_sentences_at_speakers([s1], ["A", "B", "A", "A"], min_words=2)
    assert [(s.text, sp) for s, sp in merged] == [("Hello there Hi you", "A")]


def test_split_checks_lengths_and_wordless_sentences():
    s = Sentence(0, "mm", TimeSpan(1, 2))
    assert split_sentences_at_speakers([s], [], turns=[turn(0, 1.8, "B")]) == [(s, "B")]
    assert split_sentences_at_speakers([s], []) == [(s, None)]
    with pytest.raises(ValueError):
        split_sentences_at_speakers([s], ["A"])


@given(
    st.lists(
        st.lists(st.sampled_from(["A", "B", "C", None]), min_size=1, max_size=8), min_size=1, max_size=6
    ),
    st.integers(1, 3),
)
@settings(max_examples=100, deadline=None)
def test_split_properties(speaker_lists, min_words):
    sentences, flat, t = [], [], 0.0
    for i, sps in enumerate(speaker_lists):
        ws = []
        for j, _ in enumerate(sps):
            ws.append(word(f"s{i}w{j}", t, t + 0.3))
            t += 0.4
        sentences.append(sentence(i, ws))
        flat.extend(sps)
    out = split_sentences_at_speakers(sentences, flat, min_words=min_words)
    assert [s.index for s, _ in out] == list(range(len(out)))
    # every word kept once, in order; text and span links hold
    assert [w for s, _ in out for w in s.words] == [w for s in sentences for w in s.words]
    for s, _ in out:
        assert s.text == join_words(s.words)
        assert s.start <= s.words[0].start and s.end >= s.words[-1].end
    # each piece has one named speaker among its words (or none named)
    pos = 0
    for s, sp in out:
        named = {x for x in flat[pos : pos + len(s.words)] if x is not None}
        pos += len(s.words)
        if min_words == 1:
            assert named <= {sp} or (not named and sp is None)


# ---- speaker_summary --------------------------------------------------------------------------


def test_speaker_summary():
    speakers = ["A", "B", "A", None, "A"]
    spans_ = [TimeSpan(0, 2), TimeSpan(2, 3), TimeSpan(4, 6), TimeSpan(6, 7), TimeSpan(8, 9)]
    voice = [
        {"happy": 0.8, "sad": 0.2},
        {"happy": 0.5, "sad": 0.5},
        None,
        {"happy": 1.0},
        {"happy": 0.2, "sad": 0.8},
    ]
    text = [{"joy": 1.0}, {"anger": 1.0}, {"joy": 0.5, "sadness": 0.5}, None, {"sadness": 1.0}]
    turns = [turn(0, 2, "A"), turn(2, 3, "B"), turn(4, 6, "A"), turn(8, 9, "A"), turn(9.5, 10, "C")]
    out = speaker_summary(speakers, spans_, voice, text, turns=turns, duration=9.0)
    by = {s.speaker: s for s in out}
    assert [s.speaker for s in out] == ["A", "B", "C"]
    a = by["A"]
    assert a.num_sentences == 3 and a.talk_time_s == pytest.approx(5.0)
    assert a.share == pytest.approx(5.0 / 6.5)
    assert a.voice_mean == pytest.approx({"happy": 0.5, "sad": 0.5})
    assert a.text_mean == pytest.approx({"joy": 0.5, "sadness": 0.5})
    assert [s.num_sentences for s in a.segments] == [1, 1, 1]
    assert a.dominant_trend["voice"] == ["happy", None, "sad"]
    assert a.voice_change == pytest.approx({"happy": -0.6, "sad": 0.6})
    assert a.text_change == pytest.approx({"joy": -1.0, "sadness": 1.0})
    assert by["C"].num_sentences == 0 and by["C"].voice_mean is None and by["C"].dominant_voice is None
    d = a.to_dict()
    assert d["dominant_text"] in ("joy", "sadness") and len(d["segments"]) == 3
    # without turns: talk time from the sentences
    plain = speaker_summary(speakers, spans_, voice, text, parts=1)
    assert {s.speaker: s.talk_time_s for s in plain} == {"A": 5.0, "B": 1.0}
    with pytest.raises(ValueError):
        speaker_summary(["A"], [], [], [])


# ---- clustering -------------------------------------------------------------------------------


def _voices(
    rng: np.random.Generator, n_speakers: int, per: int, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(size=(n_speakers, 32))
    labels = np.repeat(np.arange(n_speakers), per)
    rng.shuffle(labels)
    x = np.abs(centers[labels] + spread * rng.normal(size=(len(labels), 32)))  # GE2E is non-negative
    return x, labels


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cluster_speakers_recovers_well_separated_voices(k):
    rng = np.random.default_rng(k)
    x, truth = _voices(rng, k, 6, 0.05)
    r = cluster_speakers(x)
    assert r.num_speakers == k and r.estimated
    # the same partition, labelled by first appearance
    assert r.labels[0] == 0
    for a in range(len(truth)):
        for b in range(len(truth)):
            assert (truth[a] == truth[b]) == (r.labels[a] == r.labels[b])


def test_cluster_speakers_edges():
    assert cluster_speakers(np.zeros((0, 8))).num_speakers == 0
    assert cluster_speakers(np.ones((1, 8))).labels.tolist() == [0]
    x, _ = _voices(np.random.default_rng(0), 2, 4, 0.05)
    assert cluster_speakers(x, num_speakers=5).num_speakers <= len(x)
    assert cluster_speakers(x, num_speakers=1).labels.tolist() == [0] * len(x)
    assert cluster_speakers(x, max_speakers=1).num_speakers == 1


def test_nuisance_directions_remove_the_shared_within_speaker_spread():
    from emoflow.diarization.clustering import nuisance_directions, project_out

    rng = np.random.default_rng(3)
    d = 24
    nuisance = np.zeros(d)
    nuisance[0] = 1.0  # every speaker's clips spread along axis 0 ("emotion")
    centers = np.abs(rng.normal(size=(3, d))) + 1.0
    centers[:, 0] = 0.0
    who = np.repeat(np.arange(3), 7)
    spread = np.outer(rng.normal(scale=3.0, size=len(who)), nuisance)
    x = centers[who] + spread + 0.01 * rng.normal(size=(21, d))
    u = nuisance_directions(x, [f"s{w}" for w in who], rank=1)
    assert u.shape == (1, d) and abs(abs(u[0, 0]) - 1.0) < 1e-2
    y = project_out(x, u)
    assert np.allclose(np.linalg.norm(y, axis=1), 1.0) and np.abs(y @ u.T).max() < 1e-9
    assert np.abs(y[:, 0]).max() < 0.05 < np.abs(x[:, 0] / np.linalg.norm(x, axis=1)).max()
    assert np.allclose(project_out(x, None), x / np.linalg.norm(x, axis=1, keepdims=True))
    with pytest.raises(ValueError):
        nuisance_directions(x[:3], ["a", "b", "c"])  # no speaker with two clips
    with pytest.raises(ValueError):
        nuisance_directions(x, ["a"] * 5)
    with pytest.raises(ValueError):
        project_out(x, np.ones((1, d + 1)))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_count_threshold_mode_and_nuisance_in_cluster_speakers(k):
    from emoflow.diarization.clustering import NUISANCE_CLUSTERING, ClusteringConfig

    rng = np.random.default_rng(10 + k)
    x, truth = _voices(rng, k, 5, 0.05)
    threshold = NUISANCE_CLUSTERING.count_threshold
    config = ClusteringConfig(single_speaker_distance=0.2, count_threshold=threshold)
    r = cluster_speakers(x, config=config)
    assert r.num_speakers == k and r.estimated
    assert len(set(zip(truth.tolist(), r.labels.tolist()))) == k
    assert cluster_speakers(x, config=NUISANCE_CLUSTERING, nuisance=np.eye(x.shape[1])[:2]).num_speakers >= 1
    with pytest.raises(ValueError):
        ClusteringConfig(count_threshold=2.5)


def test_load_nuisance_validates_the_file(tmp_path):
    from emoflow.diarization.clustering import load_nuisance
    from emoflow.errors import ConfigError

    assert load_nuisance(None, 8) is None
    good = tmp_path / "u.npy"
    np.save(good, np.eye(8)[:3])
    assert load_nuisance(str(good), 8).shape == (3, 8)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(8))
    for path in (bad, tmp_path / "missing.npy"):
        with pytest.raises(ConfigError, match="nuisance directions"):
            load_nuisance(str(path), 8)
