import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.asr.transcript_io import transcript_from_json
from emoflow.errors import RepairWarning
from emoflow.text.sentences import (
    SentenceConfig,
    SentenceSegmenter,
    align_sentences,
    refine_boundaries,
    split_text,
)
from emoflow.types import Sentence, TimeSpan, Transcript, Word, join_words

WORD_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list("abcXYZé好.!?,'$-0123456789")), min_size=1, max_size=8),
    st.sampled_from(["Dr.", "Mr.", "...", "[UM]", "e.g.", "3.5", "Yes!", "why?"]),
)


@st.composite
def word_lists(draw):
    texts = draw(st.lists(WORD_TEXT, min_size=0, max_size=60))
    t, words = 0.0, []
    for text in texts:
        t += draw(st.floats(0, 1.5))
        d = draw(st.floats(0, 1.0))
        words.append(Word(text, TimeSpan(t, t + d)))
        t += d
    return words


def check_invariants(words, sentences):
    # every word in exactly one sentence, in order; text = words joined; span = first start..last end
    assert [w for s in sentences for w in s.words] == list(words)
    for i, s in enumerate(sentences):
        assert s.index == i and s.words
        assert s.text == join_words(s.words)
        assert s.start == s.words[0].start and s.end == s.words[-1].end


@settings(max_examples=200, deadline=None)
@given(word_lists(), st.sampled_from(["auto", "pysbd", "pauses"]))
def test_alignment_invariants_hold_for_any_words(words, splitter):
    seg = SentenceSegmenter(SentenceConfig(splitter=splitter, max_sentence_s=8.0))
    check_invariants(words, seg(Transcript(tuple(words))))


@settings(max_examples=200, deadline=None)
@given(word_lists(), st.lists(st.integers(0, 400), max_size=10))
def test_align_accepts_any_sentence_cut(words, cuts):
    """Whatever the splitter returns (even cuts inside words), the invariants hold."""
    text = join_words(words)
    pos = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(pos, pos[1:])]
    check_invariants(words, align_sentences(words, pieces))


def ws(*items):
    out, t = [], 0.0
    for item in items:
        text, d, gap = (item + (0.0,))[:3] if isinstance(item, tuple) else (item, 0.3, 0.0)
        t += gap
        out.append(Word(text, TimeSpan(t, t + d)))
        t += d
    return out


def test_abbreviations_and_decimals_do_not_split():
    words = ws(
        *["Mr.", "Quilter", "is", "the", "apostle.", "Dr.", "Smith", "paid", "$3.5", "million.", "Really?"]
    )
    s = SentenceSegmenter()(Transcript(tuple(words)))
    assert [x.text for x in s] == ["Mr. Quilter is the apostle.", "Dr. Smith paid $3.5 million.", "Really?"]


def test_mr_example_is_one_sentence(shared):
    ex = json.loads((shared / "transcripts" / "hf_pipeline_word_chunks_examples.json").read_text())
    ex = ex["whisper_tiny_en__librispeech_dummy_0"]
    s = SentenceSegmenter()(transcript_from_json(ex["output"]))
    assert len(s) == 1 and (s[0].start, s[0].end) == (0.38, 5.84)


def test_unpunctuated_text_falls_back_to_pauses():
    words = ws(
        ("i", 0.2),
        ("am", 0.2),
        ("happy", 0.3),
        ("but", 0.2, 0.9),
        ("now", 0.2),
        ("sad", 0.3),
        ("ok", 0.2, 0.75),
    )
    s = SentenceSegmenter(SentenceConfig(pause_s=0.7))(Transcript(tuple(words)))
    assert [x.text for x in s] == ["i am happy", "but now sad", "ok"]


def test_long_sentences_split_at_their_longest_pause():
    words = ws(*[("w", 1.0, 0.1 if i != 12 else 0.5) for i in range(20)])
    s = SentenceSegmenter(SentenceConfig(splitter="pauses", pause_s=5, max_sentence_s=15))(
        Transcript(tuple(words))
    )
    assert [len(x.words) for x in s] == [12, 8]


def test_fillers_and_unicode_stay_in_their_sentences():
    words = ws("So", "[UM]", "I", "think", "so.", "Ça", "va?", "好的。")
    s = SentenceSegmenter()(Transcript(tuple(words)))
    assert [x.text for x in s][0] == "So [UM] I think so."
    check_invariants(words, s)


def test_split_text_keeps_characters():
    text = "So, um, I I was like... yeah. Dr. Smith said it's fine! Really? Okay."
    parts = split_text(text)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")
    assert len(parts) >= 3


def sent(i, a, b):
    return Sentence(i, f"s{i}", TimeSpan(a, b), (Word(f"s{i}", TimeSpan(a, b)),))


def test_refine_trims_to_speech_and_moves_spill_to_the_neighbour():
    # Whisper-like spans: contiguous, sentence-final words absorb the pause
    sentences = [sent(0, 0.0, 3.8), sent(1, 3.96, 7.1), sent(2, 7.4, 9.24)]
    speech = [TimeSpan(0.5, 3.1), TimeSpan(3.7, 6.4), TimeSpan(7.0, 7.6), TimeSpan(7.7, 8.6)]
    out, dropped = refine_boundaries(sentences, speech, spill_s=0.3, max_extend_s=0.6)
    assert dropped == 0
    assert [(s.start, s.end) for s in out] == [(0.5, 3.1), (3.7, 6.4), (7.0, 8.6)]


def test_refine_drops_sentences_without_speech():
    sentences = [sent(0, 0.0, 2.0), sent(1, 5.0, 7.0), sent(2, 8.0, 9.0)]
    out, dropped = refine_boundaries(sentences, [TimeSpan(0.2, 1.8), TimeSpan(8.1, 8.9)])
    assert dropped == 1
    assert [s.index for s in out] == [0, 1] and [s.text for s in out] == ["s0", "s2"]


def test_segmenter_warns_when_dropping():
    words = ws(("Thank", 0.3), ("you.", 0.3))

    class NoSpeech:
        def __call__(self, audio):
            return []

    import numpy as np

    from emoflow.audio.io import Audio

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = SentenceSegmenter(vad=NoSpeech())(Transcript(tuple(words)), Audio(np.zeros(16000, np.float32)))
    assert out == [] and any(issubclass(x.category, RepairWarning) for x in w)


@settings(max_examples=150, deadline=None)
@given(word_lists(), st.lists(st.tuples(st.floats(0, 60), st.floats(0.05, 5)), max_size=20))
def test_refined_sentences_stay_ordered_inside_speech(words, regions):
    sentences = SentenceSegmenter(SentenceConfig(splitter="pauses", pause_s=0.5))(Transcript(tuple(words)))
    speech, t = [], 0.0
    for gap, dur in sorted(regions):
        speech.append(TimeSpan(t + gap, t + gap + dur))
        t += gap + dur
    out, dropped = refine_boundaries(sentences, speech)
    assert len(out) + dropped == len(sentences)
    for a, b in zip(out, out[1:]):
        assert a.end <= b.start + 1e-9
    for s in out:
        assert any(s.span.overlaps(r) or s.span.intersection(r) for r in speech)


def test_config_rejects_unknown_splitter():
    from emoflow.errors import ConfigError

    with pytest.raises(ConfigError):
        SentenceConfig(splitter="magic")  # type: ignore[arg-type]
