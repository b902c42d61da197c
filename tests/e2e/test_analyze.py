"""End to end: tiny replicas + the real Whisper tiny.en over the shared speech recordings."""

from __future__ import annotations

import difflib
import json
import re

import numpy as np
import pytest
import soundfile as sf

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.errors import TranscriptError
from emoflow.pipeline import Pipeline
from emoflow.results import validate_result
from tests.helpers import boundary_error, need_shared, run_cli, run_cli_in_process, speech_files, truth_for

pytestmark = pytest.mark.slow
FILES = [
    "result.json",
    "embeddings.npz",
    "sentences.csv",
    "timeline.csv",
    "transcript.srt",
    "timeline.png",
    "flow.png",
    "report.html",
]


@pytest.fixture(scope="module")
def config(replica_config):
    return replica_config


@pytest.fixture(scope="module")
def pipeline(config):
    return Pipeline(config)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, replica_args):
    """One CLI run over every shared recording plus a corrupt file."""
    files = speech_files()
    if not files:
        pytest.skip("needs ../shared/audio/speech")
    out = tmp_path_factory.mktemp("analyze")
    bad = out / "corrupt.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(30))
    r = run_cli(
        "analyze",
        *map(str, files),
        str(bad),
        "--out",
        str(out / "res"),
        *replica_args,
        timeout=900,
    )
    return r, out / "res", files


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower())


def test_cli_analyzes_all_and_reports_the_bad_file(cli_run):
    r, out, files = cli_run
    assert r.returncode == 3, r.stderr
    assert "corrupt.wav" in r.stderr and f"{len(files)} of {len(files) + 1} recording(s) analysed" in r.stderr
    assert not (out / "corrupt").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(f.stem for f in files)


@pytest.mark.parametrize("index", range(4))
def test_outputs_are_complete_valid_and_right(cli_run, index):
    _, out, files = cli_run
    if index >= len(files):
        pytest.skip("fewer recordings")
    audio = files[index]
    d = out / audio.stem
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
    data = json.loads((d / "result.json").read_text())
    validate_result(data)
    truth = truth_for(audio)
    # sentence texts match the spoken sentences (Whisper tiny.en makes a few word errors)
    spoken = norm(" ".join(s["text"] for s in truth["sentences"]))
    heard = norm(" ".join(s["text"] for s in data["sentences"]))
    assert difflib.SequenceMatcher(None, spoken, heard).ratio() > 0.8
    assert len(truth["sentences"]) - 1 <= len(data["sentences"]) <= len(truth["sentences"])
    pred = [(s["start"], s["end"]) for s in data["sentences"]]
    assert boundary_error(pred, [(s["start"], s["end"]) for s in truth["sentences"]]) < 0.15
    # provenance
    assert (
        data["source"]["sample_rate"] == truth["sample_rate"]
        and data["source"]["channels"] == truth["channels"]
    )
    assert data["source"]["duration_s"] == pytest.approx(truth["duration_s"], abs=0.01)
    assert data["models"]["asr"]["id"].endswith("whisper-tiny.en")
    # embeddings: fused rows = audio dim + text dim, rows in sentence / window order
    npz = np.load(d / "embeddings.npz")
    n, w = len(data["sentences"]), len(data["timeline"]["windows"])
    da, dt = npz["audio_sentences"].shape[1], npz["text_sentences"].shape[1]
    assert npz["audio_sentences"].shape == (n, da) and npz["text_sentences"].shape == (n, dt)
    assert npz["fused_sentences"].shape == (n, da + dt)
    np.testing.assert_array_equal(npz["fused_sentences"][:, :da], npz["audio_sentences"])
    assert npz["timeline"].shape == (w, da) and npz["audio_utterance"].shape == (da,)
    assert data["embeddings"]["arrays"]["fused_sentences"] == [n, da + dt]
    for s in data["sentences"]:
        assert s["text_emotion"]["scores"] == sorted(s["text_emotion"]["scores"], reverse=True)
        assert s["sequence"] == "__".join(s["text_emotion"]["labels"][:3])
    srt = (d / "transcript.srt").read_text()
    assert srt.count(" --> ") == n
    assert (d / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_api_result_views(pipeline):
    audio = speech_files()[0] if speech_files() else pytest.skip("needs ../shared/audio/speech")
    r = pipeline.analyze(audio)
    df = r.sentences_frame()
    assert list(df["text"]) == [s.sentence.text for s in r.sentences]
    assert {"text_top", "audio_top", "sequence", "text_joy", "audio_happy"} <= set(df.columns)
    assert json.loads(r.to_json())["schema_version"]
    assert set(r.timings) >= {"asr", "audio_emotion", "text_emotion"}


def test_precomputed_transcript(pipeline, tmp_path):
    audio = need_shared("audio", "speech", "three_moods.wav")
    transcript = {
        "text": " I am so happy. Why?",
        "chunks": [
            {"text": " I", "timestamp": [0.5, 0.7]},
            {"text": " am", "timestamp": [0.7, 0.9]},
            {"text": " so", "timestamp": [0.9, 1.1]},
            {"text": " happy.", "timestamp": [1.1, 2.4]},
            {"text": " Why?", "timestamp": [7.3, None]},
        ],
    }
    p = tmp_path / "t.json"
    p.write_text(json.dumps(transcript))
    r = pipeline.analyze(audio, transcript=p)
    assert [s.sentence.text for s in r.sentences] == ["I am so happy.", "Why?"]
    assert r.models["asr"].id == "precomputed transcript"
    long = tmp_path / "long.json"
    long.write_text(json.dumps({"chunks": [{"text": " a", "timestamp": [50.0, 51.0]}]}))
    with pytest.raises(TranscriptError, match="runs to 50.00 s"):
        pipeline.analyze(audio, transcript=long)


def test_silence_gives_zero_sentences_and_a_timeline(pipeline, tmp_path):
    rng = np.random.default_rng(0)
    r = pipeline.analyze(((0.001 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000))
    assert r.sentences == [] and len(r.timeline.spans) == 4
    d = r.save(tmp_path / "silence")
    data = json.loads((d / "result.json").read_text())
    validate_result(data)
    assert data["sentences"] == [] and data["embeddings"]["arrays"]["fused_sentences"][0] == 0
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)


def test_audio_shorter_than_a_window(pipeline):
    rng = np.random.default_rng(1)
    r = pipeline.analyze(Audio((0.001 * rng.standard_normal(16000)).astype(np.float32)))
    assert [(s.start, s.end) for s in r.timeline.spans] == [(0.0, 1.0)]


def test_rates_and_channels_give_the_same_shape(pipeline, tmp_path):
    from emoflow.audio.io import load_audio

    base = load_audio(need_shared("audio", "speech", "three_moods.wav")).samples
    import soxr

    shapes = set()
    for rate, ch in ((8000, 1), (44100, 2), (16000, 1)):
        x = soxr.resample(base, 16000, rate) if rate != 16000 else base
        p = tmp_path / f"x{rate}.wav"
        sf.write(p, np.stack([x] * ch, 1) if ch > 1 else x, rate)
        r = pipeline.analyze(p)
        shapes.add(
            (len(r.sentences), r.fused_sentences.shape[1], len(r.timeline.spans), r.timeline.scores.shape[1])
        )
        assert r.source.sample_rate == rate and r.source.channels == ch
    assert len(shapes) == 1


def test_outputs_replace_atomically(pipeline, tmp_path):
    r = pipeline.analyze(Audio(np.zeros(16000 * 2, np.float32)))
    d = r.save(tmp_path / "x", ["json"])
    assert [p.name for p in d.iterdir()] == ["result.json"]
    d = r.save(tmp_path / "x", ["json", "csv"])
    assert sorted(p.name for p in d.iterdir()) == ["result.json", "sentences.csv", "timeline.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp dirs left behind


def test_timeline_mode_pooled(config):
    from dataclasses import replace

    p = Pipeline(replace(config, timeline=TimelineConfig(mode="pooled")))
    r = p.analyze(Audio(np.zeros(16000 * 5, np.float32)))
    assert r.timeline.mode == "pooled" and r.timeline.spans[-1].end == 5.0


def test_cli_in_process_outputs_modes_and_report_escaping(replica_args, tmp_path):
    """One short analysis through the CLI in this process: ordinary file modes (issue 11.11), a
    word with ``<!--<script>`` kept whole in the report's data (11.10), nothing else in --out."""
    import os

    audio = need_shared("audio", "speech", "three_moods.wav")
    word = "<!--<script>"
    t = tmp_path / "t.json"
    t.write_text(
        json.dumps(
            {
                "chunks": [
                    {"text": " I", "timestamp": [0.5, 0.7]},
                    {"text": " said", "timestamp": [0.7, 0.9]},
                    {"text": f" {word}.", "timestamp": [0.9, 2.4]},
                ]
            }
        )
    )
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        r = run_cli_in_process(
            "analyze",
            str(audio),
            "--transcript",
            str(t),
            "--out",
            str(out),
            "--format",
            "json,html",
            *replica_args,
        )
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    d = out / audio.stem
    assert [p.name for p in out.iterdir()] == [audio.stem]
    assert sorted(p.name for p in d.iterdir()) == ["report.html", "result.json"]
    assert d.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in d.iterdir()} == {0o644}
    html = (d / "report.html").read_text()
    data = html.split('<script type="application/json" id="emoflow-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and word in json.loads(data)["sentences"][0]["text"]
