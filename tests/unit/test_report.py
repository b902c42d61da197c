"""The HTML report without models or a browser: the template renders what the result holds,
escaped; plotly.js is inlined by default and shared (written once, loaded by relative path)
when an assets folder is given. The page in a real browser: tests/e2e/test_report_browser.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emoflow.errors import ConfigError
from emoflow.export.writers import SHARED_ASSETS, save_result
from emoflow.provenance import Provenance
from emoflow.results import Result, SentenceResult, SourceInfo
from emoflow.types import AudioEmotion, EmotionScores, Sentence, Timeline, TimeSpan, Transcript
from emoflow.viz.assets import plotly_js, plotly_js_name

AUDIO = ("angry", "happy", "neutral")
TEXT = ("anger", "joy", "neutral")
WORD = "<!--<script>&amp;"


def small_result(path: str = "talk.wav") -> Result:
    sentences = [
        SentenceResult(
            Sentence(i, text, TimeSpan(start, start + 1.0)),
            EmotionScores(TEXT, (0.1, 0.7, 0.2)),
            "joy__neutral",
            EmotionScores(AUDIO, (0.2, 0.5, 0.3)),
        )
        for i, (text, start) in enumerate([("I am so happy.", 0.5), (f"I said {WORD}.", 2.0)])
    ]
    spans = (TimeSpan(0.0, 2.0), TimeSpan(1.0, 3.0))
    rng = np.random.default_rng(0)
    return Result(
        source=SourceInfo(path, None, 3.5, 16000, 1),
        models={"asr": Provenance("given transcript", None, source="given")},
        settings={},
        transcript=Transcript(()),
        sentences=sentences,
        utterance=AudioEmotion(EmotionScores(AUDIO, (0.2, 0.5, 0.3)), np.zeros(4, np.float32)),
        timeline=Timeline(
            "exact", 2.0, 1.0, AUDIO, spans, rng.dirichlet(np.ones(3), 2), np.zeros((2, 4), np.float32)
        ),
        audio_sentences=np.zeros((2, 4), np.float32),
        text_sentences=np.zeros((2, 3), np.float32),
        audio_samples=(0.01 * rng.standard_normal(16000 * 3)).astype(np.float32),
    )


def embedded_data(html: str) -> dict:
    text = html.split('<script type="application/json" id="emoflow-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in text
    return json.loads(text)


def test_a_single_report_is_self_contained(tmp_path):
    d = save_result(small_result(), tmp_path / "talk", ["html"])
    html = (d / "report.html").read_text(encoding="utf-8")
    assert plotly_js()[:2000] in html and "<script charset" not in html and 'src="../' not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk"]
    assert 'src="data:audio/ogg;base64,' in html and '<div id="timeline"' in html
    # the sentence text: escaped in the table, whole in the data, and never the end of a script
    assert "I said &lt;!--&lt;script&gt;&amp;amp;." in html and WORD not in html
    data = embedded_data(html)
    assert [s["text"] for s in data["sentences"]][1] == f"I said {WORD}."
    assert data["cursor_shape"] == 2 and data["plotly_src"] is None
    assert html.count("<tr data-start=") == 2 and 'data-start="2.000"' in html


def test_reports_of_a_batch_share_one_plotly(tmp_path):
    assets = tmp_path / SHARED_ASSETS
    for name in ("a", "b"):
        save_result(small_result(f"{name}.wav"), tmp_path / name, ["html", "json"], assets_dir=assets)
    shared = assets / plotly_js_name()
    assert [p.name for p in assets.iterdir()] == [shared.name]
    assert shared.read_bytes() == plotly_js().encode("utf-8")
    for name in ("a", "b"):
        html = (tmp_path / name / "report.html").read_text(encoding="utf-8")
        src = f"../{SHARED_ASSETS}/{shared.name}"
        assert f'<script charset="utf-8" src="{src}"></script>' in html
        assert embedded_data(html)["plotly_src"] == src
        assert len(html) < 500_000 and plotly_js()[:2000] not in html
    # written once: a later save leaves the file alone; a damaged one is replaced
    before = shared.stat().st_mtime_ns
    save_result(small_result(), tmp_path / "c", ["html"], assets_dir=assets)
    assert shared.stat().st_mtime_ns == before
    shared.write_text("truncated")
    save_result(small_result(), tmp_path / "c", ["html"], assets_dir=assets)
    assert shared.read_bytes() == plotly_js().encode("utf-8")
    # no report: nothing shared is written
    save_result(small_result(), tmp_path / "d", ["json"], assets_dir=tmp_path / "unused")
    assert not (tmp_path / "unused").exists()


def test_shared_assets_path_is_relative_and_quoted(tmp_path):
    assets = tmp_path / "shared files#1"
    d = save_result(small_result(), tmp_path / "out" / "x", ["html"], assets_dir=assets)
    html = (d / "report.html").read_text(encoding="utf-8")
    assert f'src="../../shared%20files%231/{plotly_js_name()}"' in html


def test_shared_assets_inside_the_result_folder_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="inside the result folder"):
        save_result(small_result(), tmp_path / "x", ["html"], assets_dir=tmp_path / "x" / "assets")
    assert not (tmp_path / "x").exists()


def test_tables_flatten_the_types_own_records(tmp_path):
    from emoflow.export.sentences import sentences_csv
    from emoflow.export.tables import sentences_table, timeline_table

    r = small_result()
    df = sentences_table(r)
    assert list(df.columns) == [
        *("index", "start", "end", "speaker", "text", "sequence", "text_top", "audio_top"),
        *(f"text_{k}" for k in TEXT),
        *(f"audio_{k}" for k in AUDIO),
    ]
    assert list(df["text_top"]) == ["joy", "joy"] and list(df["text_joy"]) == [0.7, 0.7]
    tl = timeline_table(r)
    assert list(tl.columns) == ["start", "end", *AUDIO] and tl.shape == (2, 5)
    np.testing.assert_allclose(tl[list(AUDIO)].to_numpy(), r.timeline.scores)
    empty = Result(**{**r.__dict__, "sentences": []})
    assert list(sentences_table(empty).columns)[:5] == ["index", "start", "end", "speaker", "text"]
    csv = sentences_csv([s.sentence for s in r.sentences]).splitlines()
    assert csv[:2] == ["index,start,end,text", "0,0.500,1.500,I am so happy."]
    d = save_result(r, tmp_path / "t", ["csv"])
    assert (d / "sentences.csv").read_text().startswith("index,start,end,speaker,text,sequence,text_top")


# ---- speakers (diarised results) and voice models without scores ------------------------------


def diarised_result() -> Result:
    """Three sentences of two speakers (the third is SPEAKER_00's again), with their turns."""
    from dataclasses import replace

    from emoflow.diarization import Diarization, SpeakerTurn

    r = small_result()
    third = SentenceResult(
        Sentence(2, "Well, not me.", TimeSpan(2.9, 3.4)),
        EmotionScores(TEXT, (0.6, 0.1, 0.3)),
        "anger__neutral",
        EmotionScores(AUDIO, (0.7, 0.1, 0.2)),
    )
    turns = [(0.4, 1.6, "x"), (1.9, 3.0, "y"), (2.9, 3.45, "x")]
    r.diarization = Diarization.from_turns(SpeakerTurn(TimeSpan(a, b), s) for a, b, s in turns)
    speakers = ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    r.sentences = [
        replace(s, sentence=replace(s.sentence, speaker=spk))
        for s, spk in zip([*r.sentences, third], speakers, strict=True)
    ]
    r.audio_sentences, r.text_sentences = np.zeros((3, 4), np.float32), np.zeros((3, 3), np.float32)
    return r


def voiceless(r: Result) -> Result:
    """``r`` as a voice encoder without a classification head gives it: no voice scores."""
    from dataclasses import replace

    none = EmotionScores((), ())
    r.sentences = [replace(s, audio_emotion=none) for s in r.sentences]
    r.utterance = AudioEmotion(none, r.utterance.embedding)
    r.timeline = replace(r.timeline, labels=(), scores=np.zeros((len(r.timeline.spans), 0)))
    return r


def test_a_diarised_report_has_speaker_lanes_a_summary_and_a_filter(tmp_path):
    from emoflow.viz.figures import timeline_figure

    r = diarised_result()
    fig = timeline_figure(r)
    turns = [t for t in fig.data if t.meta == "turns"]
    assert [t.name for t in turns] == ["SPEAKER_00", "SPEAKER_01"]  # one lane per speaker
    assert list(turns[0].base) == [0.4, 2.9] and list(turns[0].x) == [1.2, 0.55]
    assert len(set(t.marker.color for t in turns)) == 2  # a colour per speaker
    text = [t for t in fig.data if t.meta == "text" and t.name == "SPEAKER_00 text"][0]
    assert [c[0] for c in text.customdata] == [0.5, 2.9]  # that speaker's sentences (seek to start)
    assert fig.layout.shapes[-1].line.dash == "dot"  # the cursor is still the last shape

    d = save_result(r, tmp_path / "talk", ["html", "png", "json"])
    html = (d / "report.html").read_text(encoding="utf-8")
    assert '<select id="speaker-filter">' in html and html.count("<option value=") == 3
    assert html.count('data-speaker="SPEAKER_00" tabindex') == 2
    assert html.count('data-speaker="SPEAKER_01" tabindex') == 1
    speakers_table = html.split('<table id="speakers">', 1)[1].split("</table>", 1)[0]
    assert speakers_table.count("<tr data-speaker=") == 2
    assert "61%" in speakers_table and "39%" in speakers_table  # share of talk time (1.75 s / 1.1 s)
    assert "+50% anger" in speakers_table  # SPEAKER_00's text went from joy to anger
    data = embedded_data(html)
    assert data["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    assert [s["speaker"] for s in data["sentences"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert plotly_js()[:2000] in html and "<script charset" not in html  # still self-contained
    assert (d / "flow.png").stat().st_size > 10_000


def test_without_diarisation_the_report_has_no_speakers(tmp_path):
    from emoflow.viz.figures import timeline_figure

    r = small_result()
    assert not [t for t in timeline_figure(r).data if t.type == "bar"]
    html = (save_result(r, tmp_path / "talk", ["html"]) / "report.html").read_text(encoding="utf-8")
    assert '<select id="speaker-filter"' not in html and '<table id="speakers"' not in html
    assert "data-speaker=" not in html and "<th>speaker</th>" not in html
    assert "speakers" not in embedded_data(html)


@pytest.mark.parametrize("make", [small_result, diarised_result], ids=["plain", "diarised"])
def test_no_voice_scores_are_said_not_crashed_on(tmp_path, make):
    from emoflow.viz.figures import timeline_figure
    from emoflow.viz.scores import NO_VOICE_SCORES

    r = voiceless(make())
    fig = timeline_figure(r)
    assert not [t for t in fig.data if t.type == "scatter"]
    assert [a.text for a in fig.layout.annotations] == [NO_VOICE_SCORES]
    d = save_result(r, tmp_path / "talk", ["html", "png"])
    assert (d / "timeline.png").stat().st_size > 5_000 and (d / "flow.png").stat().st_size > 5_000
    html = (d / "report.html").read_text(encoding="utf-8")
    assert "emoflow train --ablation audio-only" in html and "--fusion-model" in html
    assert "whole-recording voice emotion:\nno voice scores ·" in html
    table = html.split('<table id="sentences">', 1)[1]
    assert table.count(">no voice scores</span>") == len(r.sentences)  # each sentence's voice cell
    assert [s["audio_top"] for s in embedded_data(html)["sentences"]] == [None] * len(r.sentences)


def test_a_diarisation_without_speakers_draws_no_lanes(tmp_path):
    from emoflow.diarization import Diarization
    from emoflow.viz.speakers import speaker_view

    r = small_result()
    r.diarization = Diarization((), ())  # silence: no turns
    assert speaker_view(r) is None
    d = save_result(r, tmp_path / "talk", ["html", "png"])
    assert '<select id="speaker-filter"' not in (d / "report.html").read_text(encoding="utf-8")
