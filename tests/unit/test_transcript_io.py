import json

import pytest

from emoflow.asr.transcript_io import (
    adjust_pauses,
    raw_words_from_json,
    read_transcript,
    repair_words,
    transcript_from_json,
)
from emoflow.errors import RepairWarning, TranscriptError
from emoflow.types import TimeSpan, Word
from tests.helpers import need_shared


def chunks(*items):
    return {"text": "".join(t for t, _ in items), "chunks": [{"text": t, "timestamp": ts} for t, ts in items]}


def texts(t):
    return [w.text for w in t.words]


def test_hf_chunks_with_word_pieces_are_joined():
    data = chunks(
        (" It", [9.3, 9.5]),
        (" cost", [9.5, 9.7]),
        (" $3", [10.2, 10.7]),
        (".5", [10.7, 11.3]),
        (",000.", [11.3, 12.7]),
        (" Now", [12.7, 13.0]),
    )
    with pytest.warns(RepairWarning, match="word pieces joined: 2"):
        t = transcript_from_json(data)
    assert texts(t) == ["It", "cost", "$3.5,000.", "Now"]
    assert t.words[2].span == TimeSpan(10.2, 12.7)
    assert t.text == "It cost $3.5,000. Now"


def test_ctc_chunks_without_spaces_are_not_joined():
    data = chunks(("A", [0.6, 0.62]), ("MAN", [0.68, 0.86]), ("SAID", [1.06, 1.24]))
    assert texts(transcript_from_json(data)) == ["A", "MAN", "SAID"]


def test_none_times_are_interpolated_from_neighbours_and_audio_end():
    data = chunks((" a", [0.0, 1.0]), (" b", [None, None]), (" c", [2.0, 3.0]), (" d", [3.0, None]))
    with pytest.warns(RepairWarning, match="missing times interpolated: 3"):
        t = transcript_from_json(data, audio_duration=4.0)
    assert t.words[1].span.to_list() == pytest.approx([1 + 1 / 3, 1 + 2 / 3])
    assert t.words[3].end == pytest.approx(4.0)


def test_trailing_none_without_audio_uses_typical_word_length():
    data = chunks((" a", [0.0, 0.4]), (" b", [0.4, None]))
    with pytest.warns(RepairWarning):
        t = transcript_from_json(data)
    assert 0.4 < t.words[1].end <= 1.0


def test_missing_timestamp_key_and_all_none():
    data = {"text": "x y", "chunks": [{"text": " x"}, {"text": " y", "timestamp": [None, None]}]}
    with pytest.warns(RepairWarning):
        t = transcript_from_json(data, audio_duration=2.0)
    assert [w.span.to_list() for w in t.words] == [pytest.approx([0.0, 2 / 3]), pytest.approx([4 / 3, 2.0])]


def test_overlapping_and_decreasing_times_made_monotonic():
    data = chunks((" a", [0.0, 1.0]), (" b", [0.8, 1.5]), (" c", [1.4, 1.2]), (" d", [2.0, 2.5]))
    with pytest.warns(RepairWarning, match="monotonic: 2"):
        t = transcript_from_json(data)
    for prev, cur in zip(t.words, t.words[1:]):
        assert cur.start >= prev.end
    assert all(w.end >= w.start for w in t.words)


def test_fillers_kept_by_default_and_dropped_on_request():
    data = chunks((" So", [0.0, 0.3]), (" [UM]", [0.3, 0.6]), (" yes.", [0.6, 1.0]))
    assert texts(transcript_from_json(data)) == ["So", "[UM]", "yes."]
    with pytest.warns(RepairWarning, match="fillers dropped: 1"):
        assert texts(transcript_from_json(data, drop_fillers=True)) == ["So", "yes."]


def test_faster_whisper_and_own_formats():
    fw = {
        "language": "en",
        "segments": [
            {
                "words": [
                    {"word": " Hi", "start": 0.0, "end": 0.3, "probability": 0.9},
                    {"word": " there.", "start": 0.3, "end": 0.8, "probability": 0.8},
                ]
            }
        ],
    }
    t = transcript_from_json(fw)
    assert texts(t) == ["Hi", "there."] and t.language == "en" and t.words[0].probability == 0.9
    own = transcript_from_json(json.loads(json.dumps(t.to_dict())))
    assert own == t
    # the CrisperWhisper JSON we write reads back identically
    back = transcript_from_json(t.to_hf_chunks()).words
    assert [(w.text, w.span) for w in back] == [(w.text, w.span) for w in t.words]


def test_unicode_words():
    data = chunks((" Ça", [0.0, 0.3]), (" va?", [0.3, 0.6]), (" 好的。", [0.7, 1.2]))
    assert texts(transcript_from_json(data)) == ["Ça", "va?", "好的。"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"foo": 1}', "no 'chunks', 'segments' or 'words'"),
        ('"just a string"', "expected"),
        ('{"chunks": [{"text": " a", "timestamp": "0-1"}]}', "timestamp"),
        ('{"chunks": [{"text": 5, "timestamp": [0, 1]}]}', "string"),
        ('{"segments": [{"text": "no words"}]}', "word_timestamps"),
    ],
)
def test_bad_transcripts_raise_transcript_error_naming_the_file(tmp_path, content, match):
    p = tmp_path / "t.json"
    p.write_text(content)
    with pytest.raises(TranscriptError, match=match) as e:
        read_transcript(p)
    assert str(p) in str(e.value)


def test_transcript_longer_than_audio_is_an_error():
    data = chunks((" a", [0.0, 1.0]), (" b", [10.0, 11.0]))
    with pytest.raises(TranscriptError, match=r"runs to 10\.00 s but the audio is only 3\.00 s"):
        transcript_from_json(data, audio_duration=3.0)


def test_real_pipeline_examples_load(shared):
    examples = json.loads((shared / "transcripts" / "hf_pipeline_word_chunks_examples.json").read_text())
    n = 0
    for key, ex in examples.items():
        if not isinstance(ex, dict) or "output" not in ex:
            continue
        n += 1
        t = transcript_from_json(ex["output"], name=key)
        assert t.words
        for prev, cur in zip(t.words, t.words[1:]):
            assert cur.start >= prev.end
    assert n >= 2


def test_pause_adjustment_matches_crisperwhisper_rule():
    path = need_shared("transcripts", "crisperwhisper_pause_adjust_expected.json")
    data = json.loads(path.read_text())
    raw, _, _ = raw_words_from_json({"chunks": data["wav2vec2_input"]})
    words = repair_words(raw, whisper_spacing=False, pause_adjust=True)
    expected = [tuple(c["timestamp"]) for c in data["wav2vec2_expected"]]
    assert [(w.start, w.end) for w in words] == [pytest.approx(e, abs=1e-6) for e in expected]


def test_pause_adjustment_leaves_touching_words():
    ws = [Word("a", TimeSpan(0, 1)), Word("b", TimeSpan(1, 2))]
    assert adjust_pauses(ws) == ws


# ---- hostile transcripts (issue 11.9) ------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"chunks": [{"text": " a", "timestamp": [0, NaN]}]}', "finite"),
        ('{"chunks": [{"text": " a", "timestamp": [Infinity, 1]}]}', "finite"),
        ('{"chunks": [{"text": " a", "timestamp": [-Infinity, 1]}]}', "finite"),
        ('{"chunks": [{"text": " a", "timestamp": [0, 1e308]}]}', "beyond any recording"),
        ('{"words": [{"text": "a", "start": 0, "end": 1e400}]}', "finite"),
        ('{"chunks": [{"text": " a", "timestamp": [0, 1' + "0" * 400 + "]}]}", "beyond any recording"),
        ('{"words": [{"text": "a", "start": 0, "end": 1, "probability": NaN}]}', "probability"),
        (
            '{"segments": [{"words": [{"word": " a", "start": 0, "end": 1, "probability": 7}]}]}',
            "probability",
        ),
        ('{"chunks": [{"text": " a", "timestamp": [0, ' + "9" * 5000 + "]}]}", "invalid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["nan", "inf", "-inf", "1e308", "1e400", "huge-int", "nan-prob", "prob-7", "5000-digits", "deep"],
)
def test_hostile_transcripts_are_named_transcript_errors(tmp_path, content, match):
    p = tmp_path / "hostile.json"
    p.write_text(content)
    with pytest.raises(TranscriptError, match=match) as e:
        read_transcript(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_a_word_ending_far_past_the_audio_is_an_error_a_small_overrun_is_repaired():
    far = chunks((" a", [0.0, 1.0]), (" b", [2.0, 3000.0]))
    with pytest.raises(TranscriptError, match=r"ends at 3000\.00 s but the audio is only 3\.00 s"):
        transcript_from_json(far, audio_duration=3.0)
    near = chunks((" a", [0.0, 1.0]), (" b", [2.0, 3.5]))
    with pytest.warns(RepairWarning, match="clipped"):
        t = transcript_from_json(near, audio_duration=3.0)
    assert t.words[-1].end == 3.0


def test_probabilities_keep_rounding_slack():
    data = {"words": [{"text": "a", "start": 0, "end": 1, "probability": 1.0000001}]}
    assert transcript_from_json(data).words[0].probability == 1.0
