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
        *("index", "start", "end", "text", "sequence", "text_top", "audio_top"),
        *(f"text_{k}" for k in TEXT),
        *(f"audio_{k}" for k in AUDIO),
    ]
    assert list(df["text_top"]) == ["joy", "joy"] and list(df["text_joy"]) == [0.7, 0.7]
    tl = timeline_table(r)
    assert list(tl.columns) == ["start", "end", *AUDIO] and tl.shape == (2, 5)
    np.testing.assert_allclose(tl[list(AUDIO)].to_numpy(), r.timeline.scores)
    empty = Result(**{**r.__dict__, "sentences": []})
    assert list(sentences_table(empty).columns)[:4] == ["index", "start", "end", "text"]
    csv = sentences_csv([s.sentence for s in r.sentences]).splitlines()
    assert csv[:2] == ["index,start,end,text", "0,0.500,1.500,I am so happy."]
    d = save_result(r, tmp_path / "t", ["csv"])
    assert (d / "sentences.csv").read_text().startswith("index,start,end,text,sequence,text_top")
