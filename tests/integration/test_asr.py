"""Transcription with the real Whisper tiny.en (transformers and faster-whisper backends)
and a random multilingual Whisper replica (the CrisperWhisper / large-v3 code path)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emoflow.asr.base import AsrConfig, group_regions
from emoflow.asr.transcript_io import read_transcript
from emoflow.audio.io import Audio, load_audio
from emoflow.types import TimeSpan
from tests.conftest import need_shared, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_asr(whisper_tiny_dir):
    from emoflow.asr.whisper_hf import HFWhisperTranscriber

    return HFWhisperTranscriber(str(whisper_tiny_dir))


@pytest.fixture(scope="module")
def jfk():
    return load_audio(need_shared("audio", "jfk.flac"))


def check_jfk(transcript):
    text = transcript.text.lower()
    for phrase in ("my fellow americans", "your country", "do for you"):
        assert phrase in text
    assert transcript.words and all(w.start < w.end for w in transcript.words)
    americans = next(w for w in transcript.words if w.text.strip(" ,").lower() == "americans")
    assert americans.start <= 1.8 <= americans.end + 0.5
    assert transcript.language == "en"


def test_transformers_backend_on_jfk(hf_asr, jfk):
    check_jfk(hf_asr(jfk))


def test_silence_yields_no_words(hf_asr):
    rng = np.random.default_rng(0)
    quiet = Audio((0.001 * rng.standard_normal(16000 * 8)).astype(np.float32))
    assert hf_asr(quiet).words == ()


def test_speech_after_silence_is_timed_in_the_recording(hf_asr, jfk):
    padded = Audio(np.concatenate([np.zeros(16000 * 20, np.float32), jfk.samples]))
    t = hf_asr(padded)
    assert "my fellow americans" in t.text.lower()
    assert t.words[0].start >= 19.5  # nothing hallucinated in the silence, times offset correctly


def test_group_regions():
    regions = [TimeSpan(0.5, 3.0), TimeSpan(3.5, 10.0), TimeSpan(15.0, 20.0), TimeSpan(20.5, 50.0)]
    g = group_regions(regions, max_segment_s=28, max_gap_s=2.0, duration=60)
    assert [(x.start, x.end) for x in g] == [(0.0, 10.2), (14.8, 20.2), (20.3, 50.2)]


def test_multilingual_replica_runs_the_crisperwhisper_code_path(replicas, jfk):
    from emoflow.asr.whisper_hf import HFWhisperTranscriber

    t = HFWhisperTranscriber(str(replicas["whisper"]), AsrConfig(language="en", batch_size=2))
    assert t.multilingual and t._generate_kwargs()["language"] == "en"
    out = t(jfk)  # random weights: any text, but the words must be well formed and in the recording
    for w in out.words:
        assert 0 <= w.start <= w.end <= jfk.duration


@pytest.fixture(scope="module")
def ct2_dir(whisper_tiny_dir, tmp_path_factory):
    converters = pytest.importorskip("ctranslate2.converters", reason="ctranslate2 is not installed")
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed")
    out = tmp_path_factory.mktemp("ct2") / "whisper-tiny.en-ct2"
    converters.TransformersConverter(str(whisper_tiny_dir), copy_files=["tokenizer.json"]).convert(
        str(out), quantization="int8"
    )
    return out


def test_faster_whisper_backend_on_jfk(ct2_dir, jfk):
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber

    check_jfk(CT2WhisperTranscriber(str(ct2_dir), AsrConfig(language="en"))(jfk))


def test_cli_transcribe_writes_crisperwhisper_json(whisper_tiny_dir, tmp_path):
    out = tmp_path / "jfk.json"
    r = run_cli(
        "transcribe",
        str(need_shared("audio", "jfk.flac")),
        "--asr-model",
        str(whisper_tiny_dir),
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"text", "chunks"} and data["chunks"][0]["text"].startswith(" ")
    assert all(len(c["timestamp"]) == 2 for c in data["chunks"])
    assert "my fellow americans" in read_transcript(out).text.lower()
