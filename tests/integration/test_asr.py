"""Transcription with the real Whisper tiny.en (transformers and faster-whisper backends)
and a random multilingual Whisper replica (the CrisperWhisper / large-v3 code path)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emoflow.asr.base import group_regions
from emoflow.asr.transcript_io import read_transcript
from emoflow.audio.io import Audio, load_audio
from emoflow.config import AsrConfig
from emoflow.types import TimeSpan
from tests.helpers import need_shared, run_cli, speech_files

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
    assert t.multilingual and t.generate_kwargs()["language"] == "en"
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


def test_faster_whisper_transcribes_only_the_given_speech_regions(ct2_dir, jfk):
    """Issue 10.9: faster-whisper used its own VAD and ignored emoflow's regions."""
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber

    asr = CT2WhisperTranscriber(str(ct2_dir), AsrConfig(language="en"))
    first = asr(jfk, [TimeSpan(0.3, 2.9)])  # "And so my fellow Americans" only
    assert "fellow americans" in first.text.lower()
    assert "country" not in first.text.lower()
    assert first.words[-1].end <= 3.2
    both = asr(jfk, [TimeSpan(0.3, 2.9), TimeSpan(8.0, 10.6)])  # ... and "ask what you can do ..."
    assert "fellow americans" in both.text.lower() and "your country" in both.text.lower()
    assert not any(3.2 < w.start < 7.8 for w in both.words)  # nothing from the gap
    assert asr(jfk, []).words == ()


class _RecordingFasterWhisper:
    """Stands in for faster_whisper.WhisperModel: records what transcribe() was asked."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def transcribe(self, audio, **kwargs):
        from types import SimpleNamespace

        self.calls.append(kwargs)
        return iter([]), SimpleNamespace(language="en")


def test_faster_whisper_gets_our_pieces_as_clip_timestamps_and_no_vad_of_its_own():
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber

    fake = _RecordingFasterWhisper()
    asr = CT2WhisperTranscriber("any/ct2-model", AsrConfig(language="en"), model=fake)
    audio = Audio(np.zeros(16000 * 37, np.float32))  # 37 s
    speech = [TimeSpan(3.0, 5.5), TimeSpan(6.0, 9.0), TimeSpan(20.0, 26.5)]
    asr(audio, speech)
    (kw,) = fake.calls
    assert kw["vad_filter"] is False
    assert kw["clip_timestamps"] == pytest.approx([2.8, 9.2, 19.8, 26.7])  # group_regions' pieces
    assert asr(audio, []).words == () and len(fake.calls) == 1  # no speech: nothing decoded


class _FixedVad:
    """A speech detector that always finds the same regions, and counts its calls."""

    def __init__(self, regions: list[TimeSpan]) -> None:
        self.regions, self.calls = regions, 0

    def __call__(self, audio):
        self.calls += 1
        return self.regions


@pytest.fixture
def fake_ct2(monkeypatch, tmp_path):
    """A CTranslate2 model folder, and faster_whisper.WhisperModel replaced by a recorder."""
    import sys
    import types

    import emoflow.stage
    from emoflow.models import ModelCache

    built: list[_RecordingFasterWhisper] = []

    class FakeWhisperModel(_RecordingFasterWhisper):
        def __init__(self, path: str, **kwargs) -> None:
            super().__init__()
            self.kwargs = kwargs
            built.append(self)

    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=FakeWhisperModel))
    monkeypatch.setattr(emoflow.stage, "MODEL_CACHE", ModelCache())
    folder = tmp_path / "ct2-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 11)
    return folder, built


def test_make_transcriber_builds_the_backend_with_the_given_vad(fake_ct2):
    from emoflow.asr import make_transcriber
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber
    from emoflow.protocols import Transcriber

    folder, built = fake_ct2
    vad = _FixedVad([TimeSpan(3.0, 5.5)])
    asr = make_transcriber("ct2", str(folder), AsrConfig(language="en"), vad=vad)
    assert isinstance(asr, CT2WhisperTranscriber) and isinstance(asr, Transcriber)
    assert asr.vad is vad and asr.dtype_name == "int8" and built[0].kwargs["compute_type"] == "int8"
    asr(Audio(np.zeros(16000 * 10, np.float32)))  # no regions given: the transcriber's vad finds them
    assert vad.calls == 1 and built[0].calls[0]["clip_timestamps"] == pytest.approx([2.8, 5.7])
    asr(Audio(np.zeros(16000 * 10, np.float32)), [TimeSpan(1.0, 2.0)])  # regions given: no vad call
    assert vad.calls == 1 and len(built) == 1


def test_a_transcriber_without_a_vad_builds_silero_on_first_use(fake_ct2):
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber
    from emoflow.audio.vad import SpeechDetector

    asr = CT2WhisperTranscriber(str(fake_ct2[0]))
    assert isinstance(asr.vad, SpeechDetector) and asr.vad is asr.vad


def test_transcriber_provenance_names_backend_and_pause_rule_without_loading(fake_ct2):
    from emoflow.asr import asr_provenance, make_transcriber
    from emoflow.errors import ConfigError
    from emoflow.models import directory_digest

    folder, built = fake_ct2
    config = AsrConfig(language="en")
    rec = make_transcriber("faster-whisper", str(folder), config).provenance()
    assert rec.to_dict() == {
        "backend": "faster-whisper",
        "pause_adjust": False,
        "id": str(folder),
        "revision": directory_digest(folder),
        "requested_revision": None,
        "source": "local",
    }
    assert asr_provenance("ct2", str(folder), config).to_dict() == rec.to_dict()  # from the settings
    crisper = asr_provenance("transformers", "nyrahealth/CrisperWhisper")  # nothing loaded or fetched
    assert crisper.options == {"backend": "transformers", "pause_adjust": True}
    off = asr_provenance("transformers", "nyrahealth/CrisperWhisper", AsrConfig(pause_adjust=False))
    assert off.options["pause_adjust"] is False
    with pytest.raises(ConfigError, match="unknown ASR backend"):
        make_transcriber("whisper.cpp", str(folder))
    assert len(built) == 1


# -- word timestamps without every attention map (issue 16, item 3) --


@pytest.fixture(scope="module")
def stock_pipe(whisper_tiny_dir):
    """A second, untouched transformers pipeline: today's method, as the reference."""
    import torch
    from transformers import pipeline

    return pipeline(
        "automatic-speech-recognition", model=str(whisper_tiny_dir), device="cpu", dtype=torch.float32
    )


def _chunks(pipe, audio, generate_kwargs):
    out = pipe(
        {"raw": audio.samples, "sampling_rate": 16000},
        return_timestamps="word",
        generate_kwargs=dict(generate_kwargs),
    )
    return [(c["text"], *c["timestamp"]) for c in out["chunks"]]


@pytest.mark.parametrize(
    "name",
    ["jfk.flac", *(f"speech/{p.name}" for p in speech_files())],
)
def test_word_times_match_transformers_own_method(hf_asr, stock_pipe, name):
    audio = load_audio(need_shared("audio", *name.split("/")))
    ours = _chunks(hf_asr.pipe, audio, hf_asr.generate_kwargs())
    ref = _chunks(stock_pipe, audio, hf_asr.generate_kwargs())
    assert [c[0] for c in ours] == [c[0] for c in ref] and len(ours) > 5
    for (_, s1, e1), (_, s2, e2) in zip(ours, ref, strict=True):
        assert abs(s1 - s2) <= 0.02 and abs(e1 - e2) <= 0.02


def test_word_timestamps_keep_no_attention_maps(hf_asr, stock_pipe, jfk):
    """What made word timestamps cost ~600 MB per piece on tiny.en (GBs at large-v3 size):
    generate kept every encoder and decoder attention map. It must keep none now."""

    def generate(model):
        fe = stock_pipe.feature_extractor
        x = fe(jfk.samples, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
        out = model.generate(
            x.input_features,
            attention_mask=x.attention_mask,
            return_timestamps=True,
            return_token_timestamps=True,
            return_segments=True,
            num_beams=1,
        )
        return out["segments"][0][0]

    ours, ref = generate(hf_asr.pipe.model), generate(stock_pipe.model)
    assert "cross_attentions" in ref["result"] and "encoder_attentions" in ref["result"]  # today's
    assert "cross_attentions" not in ours["result"] and "encoder_attentions" not in ours["result"]
    assert np.allclose(ours["token_timestamps"].numpy(), ref["token_timestamps"].numpy(), atol=0.021)


def test_word_timestamps_from_two_threads_match_sequential_runs(hf_asr, jfk):
    """The alignment hooks sit on the shared cached model: each thread must get its own."""
    from concurrent.futures import ThreadPoolExecutor

    other = load_audio(need_shared("audio", "speech", "three_moods.wav"))
    inputs = [jfk, other]
    kw = hf_asr.generate_kwargs()
    sequential = [_chunks(hf_asr.pipe, a, kw) for a in inputs]
    with ThreadPoolExecutor(2) as pool:
        parallel = list(pool.map(lambda a: _chunks(hf_asr.pipe, a, kw), inputs))
    assert parallel == sequential
