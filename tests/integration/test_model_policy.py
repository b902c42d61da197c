"""The model-loading policy on the tiny replicas: loading keeps the caller's thread count
(issue 10.3) and results name exactly which weights produced them (issue 10.8)."""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any

import numpy as np
import pytest

from emoflow.models import ModelCache, directory_digest
from emoflow.provenance import Provenance
from emoflow.types import TimeSpan, Transcript, Word

STAGE_MODULES = (
    "emoflow.text.emotion",
    "emoflow.text.embeddings",
    "emoflow.speech.emotion2vec",
    "emoflow.asr.whisper_hf",
    "emoflow.asr.whisper_ct2",
)


@pytest.fixture
def fresh_model_cache(monkeypatch):
    """Every stage loads anew (a model cached by an earlier test would never reach ``load``):
    the stages' base holds the cache; a stage module that still imports it gets the new one too."""
    import importlib

    import emoflow.stage

    cache = ModelCache()
    monkeypatch.setattr(emoflow.stage, "MODEL_CACHE", cache)
    for name in STAGE_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "MODEL_CACHE"):
            monkeypatch.setattr(module, "MODEL_CACHE", cache)


@pytest.fixture
def caller_threads():
    """The caller's thread setting, unlike what "every core" would give; restored afterwards."""
    import torch

    from emoflow.models import available_cores

    before = torch.get_num_threads()
    want = 1 if available_cores() > 1 else 2
    torch.set_num_threads(want)
    yield want
    torch.set_num_threads(before)


def test_loading_any_stage_keeps_the_callers_thread_count(
    replicas, fresh_model_cache, caller_threads, tmp_path, monkeypatch
):
    import torch

    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber
    from emoflow.asr.whisper_hf import HFWhisperTranscriber
    from emoflow.speech.emotion2vec import Emotion2vecEncoder
    from emoflow.text.embeddings import SequenceEncoder
    from emoflow.text.emotion import TextEmotionClassifier

    builds = [
        lambda: TextEmotionClassifier(str(replicas["text-emotion"])),
        lambda: SequenceEncoder(str(replicas["distilbert"])),
        lambda: Emotion2vecEncoder(str(replicas["emotion2vec"])),  # FunASR sets its own ncpu
        lambda: HFWhisperTranscriber(str(replicas["whisper"]), vad=object()),
    ]
    for build in builds:
        stage = build()
        assert torch.get_num_threads() == caller_threads, type(stage).__name__

    # faster-whisper's own pool follows the caller's setting too, not the machine's core count
    seen: dict[str, Any] = {}

    class FakeWhisperModel:
        def __init__(self, path: str, **kw: Any) -> None:
            seen.update(kw)

    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=FakeWhisperModel))
    ct2 = tmp_path / "ct2-model"
    ct2.mkdir()
    (ct2 / "model.bin").write_bytes(b"\0" * 37)
    CT2WhisperTranscriber(str(ct2))
    assert seen["cpu_threads"] == caller_threads and torch.get_num_threads() == caller_threads


class StubTranscriber:
    """Two sentences at fixed times: the analysis runs every other stage for real."""

    def __call__(self, audio: Any, speech: Any = None) -> Transcript:
        words = [
            ("I", 0.30, 0.45),
            ("am", 0.50, 0.70),
            ("so", 0.75, 0.95),
            ("happy.", 1.00, 1.50),
            ("That", 2.00, 2.30),
            ("is", 2.35, 2.50),
            ("sad.", 2.55, 3.00),
        ]
        return Transcript(tuple(Word(t, TimeSpan(a, b), 0.9) for t, a, b in words), "en")

    def provenance(self) -> Provenance:
        return Provenance("stub transcriber", None, source="given")


def test_result_json_names_the_exact_weights(replicas, tmp_path):
    import soundfile as sf

    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline
    from emoflow.results import validate_result

    rng = np.random.default_rng(11)
    t = np.arange(int(3.7 * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(
        size=t.size
    )
    sf.write(tmp_path / "clip.wav", wave.astype(np.float32), 16000)
    config = PipelineConfig(
        asr_model=str(replicas["whisper"]),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
    speech = [TimeSpan(0.2, 3.3)]  # the tone is no speech to Silero; its provenance is recorded all the same
    pipeline = Pipeline(config, transcriber=StubTranscriber(), vad=lambda audio: speech)
    result = pipeline.analyze(tmp_path / "clip.wav")
    assert len(result.sentences) == 2
    out = result.save(tmp_path / "out", ["json"])
    data = json.loads((out / "result.json").read_text())
    validate_result(data)
    models = data["models"]
    for name, key in [
        ("asr", "whisper"),
        ("audio_emotion", "emotion2vec"),
        ("text_emotion", "text-emotion"),
        ("sequence_encoder", "distilbert"),
    ]:
        m = models[name]
        assert m["id"] == str(replicas[key]) and m["source"] == "local", name
        assert m["revision"] == directory_digest(replicas[key]), name
    assert models["asr"]["backend"] == "transformers" and models["sequence_encoder"]["pooling"] == "cls"
    assert models["vad"]["revision"].startswith("silero-vad==")
    assert len({m["revision"] for m in models.values()}) == len(models)  # each model its own weights


def test_describe_models_loads_nothing(replicas, tmp_path):
    """A process that only assembles results (the Ray writer) must not load models to describe them."""
    from emoflow.config import EmbeddingConfig, PipelineConfig
    from emoflow.pipeline import Pipeline
    from emoflow.text.embeddings import EmotionWord2Vec

    scheme = tmp_path / "scheme"
    EmotionWord2Vec.train([["joy", "surprise", "neutral"] * 9, ["anger", "fear"] * 6], vector_size=6).save(
        scheme
    )
    fusion = tmp_path / "fusion-model"
    fusion.mkdir()
    (fusion / "config.json").write_text("{}")
    (fusion / "model.pt").write_bytes(b"\1" * 53)
    config = PipelineConfig(
        asr_model=str(replicas["whisper"]),
        audio_model=str(replicas["emotion2vec"]),
        text_model="someorg/not-downloaded",
        embedding=EmbeddingConfig("word2vec", scheme=str(scheme)),
        fusion_model=str(fusion),
        offline=True,
    )
    p = Pipeline(config)
    models = {name: record.to_dict() for name, record in p.describe_models().items()}
    assert (p._transcriber, p._audio, p._text, p._embedder, p._fusion) == (None,) * 5
    enc = models["sequence_encoder"]
    assert enc["method"] == "generation" and enc["path"] == enc["id"] == str(scheme)
    assert enc["revision"] == directory_digest(scheme) and "vocabulary" not in enc
    assert EmotionWord2Vec.load(scheme).describe() == enc  # loaded or not: the same record
    assert models["fusion"]["revision"] == directory_digest(fusion)
    assert models["text_emotion"] == {
        "id": "someorg/not-downloaded",
        "revision": None,  # not in any cache, and offline: unknown, not an error
        "requested_revision": None,
        "source": "hub",
    }
    assert p.describe_models(transcript_given=True)["asr"].revision is None


def test_feature_info_keys_the_cache_by_the_weights(replicas, tmp_path):
    """Fusion checkpoints and the feature cache record the resolved revisions: other weights under
    the same name give another settings hash, so stale features are never reused."""
    import shutil

    from emoflow.config import PipelineConfig
    from emoflow.fusion.features import feature_info, settings_hash
    from emoflow.pipeline import Pipeline

    text = shutil.copytree(replicas["text-emotion"], tmp_path / "text-emotion")
    config = PipelineConfig(
        asr_model=str(replicas["whisper"]),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(text),
        encoder_model=str(replicas["distilbert"]),
    )
    info = feature_info(Pipeline(config)).to_dict()
    assert info["audio_model"]["revision"] == directory_digest(replicas["emotion2vec"])
    assert info["text_model"]["revision"] == directory_digest(text)
    assert info["sequence_encoder"]["revision"] == directory_digest(replicas["distilbert"])
    assert info["asr_model"]["revision"] == directory_digest(replicas["whisper"])
    assert info["asr_model"]["backend"] == "transformers"
    weights = next(p for p in text.iterdir() if p.suffix in (".safetensors", ".bin"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    again = feature_info(Pipeline(config)).to_dict()
    assert again["text_model"]["revision"] != info["text_model"]["revision"]
    assert settings_hash(again) != settings_hash(info)


def test_concurrent_vad_calls_restore_the_callers_thread_count():
    """Silero VAD runs on one thread and restores the count after; two detectors at once must not
    leave the process on one thread (the count is process-wide)."""
    import threading

    import numpy as np
    import torch

    from emoflow.audio.vad import SpeechDetector

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
        detectors = [SpeechDetector(), SpeechDetector()]
        start = threading.Barrier(2, timeout=60)
        errors: list[BaseException] = []

        def work(det: SpeechDetector) -> None:
            try:
                start.wait()
                for _ in range(5):
                    det(audio)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(d,)) for d in detectors]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors and not any(t.is_alive() for t in threads)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_loading_the_vad_keeps_the_callers_thread_count():
    """Importing silero_vad calls torch.set_num_threads(1) for the whole process: after the CLI
    set its policy, every later model ran on one core. A fresh process, since the import's side
    effect happens once per process; a caller count other than 1, so it cannot coincide."""
    import subprocess

    code = (
        "import torch; torch.set_num_threads(3)\n"
        "from emoflow.audio.vad import SpeechDetector\n"
        "SpeechDetector()\n"
        "print(torch.get_num_threads())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3"
