"""The offline diarisation backend with its REAL pretrained GE2E weights (the ``resemblyzer``
wheel) on the shared conversations, scored with pyannote.metrics; edge cases; the pyannote
backend's fast failures.

Bounds come from measurements (benchmarks/bench_diarization.py, docs/performance.md): with the
count estimated the three conversations gave DER 0.171 overall (0.086 / 0.219 / 0.210, pyannote
collar 0.25 s; conv3 comes back with 3 speakers instead of 2), with the true count 0.112.
The bounds leave a margin for float differences between machines, not for regressions.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from emoflow.audio.io import Audio, load_audio
from emoflow.diarization import Diarization, SpeakerTurn, make_diarizer
from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.types import TimeSpan
from tests.helpers import need_shared

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("resemblyzer") is None,
    reason="the offline diarisation backend needs resemblyzer (pip install 'emoflow[diarization]')",
)


@pytest.fixture(scope="module")
def diarizer():
    from emoflow.diarization.offline import OfflineDiarizer

    return OfflineDiarizer(device="cpu")


def _truth(wav: Path) -> list[SpeakerTurn]:
    d = json.loads(wav.with_name(wav.stem + ".truth.json").read_text())
    return [SpeakerTurn(TimeSpan(t["start"], t["end"]), t["speaker"]) for t in d["turns"]]


@pytest.fixture(scope="module")
def conversations() -> list[Path]:
    folder = need_shared("data", "conversations")
    files = sorted(folder.glob("conv*.wav"))
    if not files:
        pytest.skip("no conversations in ../shared/data/conversations")
    return files


def test_der_on_the_shared_conversations(diarizer, conversations):
    pytest.importorskip("pyannote.metrics", reason="DER needs pyannote.metrics (the dev extra)")
    from emoflow.diarization.metrics import DiarizationEvaluator

    est, oracle = DiarizationEvaluator(collar=0.25), DiarizationEvaluator(collar=0.25)
    right = 0
    for wav in conversations:
        audio = load_audio(wav)
        ref = _truth(wav)
        hyp = diarizer(audio)
        s = est(ref, list(hyp.turns), audio.duration, uri=wav.stem)
        right += s.count_correct
        assert hyp.speakers == tuple(f"SPEAKER_{i:02d}" for i in range(hyp.num_speakers))
        assert hyp.backend["backend"] == "ge2e" and hyp.backend["model"]["source"] == "package"
        assert all(0 <= t.start < t.end <= audio.duration + 1e-6 for t in hyp.turns)
        k = len({t.speaker for t in ref})
        fixed = diarizer(audio, num_speakers=k)
        assert fixed.num_speakers == k
        oracle(ref, list(fixed.turns), audio.duration, uri=wav.stem)
    assert est.der <= 0.20, f"DER {est.der:.3f} with the count estimated (measured 0.171)"
    assert oracle.der <= 0.15, f"DER {oracle.der:.3f} with the true count (measured 0.112)"
    assert right >= 2, "the count was right on 2 of the 3 conversations when measured"


def test_one_speaker_silence_short_and_overlap(diarizer):
    three_moods = need_shared("audio", "speech", "three_moods.wav")
    audio = load_audio(three_moods)
    one = diarizer(audio)
    assert one.num_speakers == 1 and one.turns

    silence = Audio(np.zeros(16000 * 3, dtype=np.float32))
    assert diarizer(silence) == Diarization((), ())
    assert diarizer(silence).backend["estimated_speakers"] == 0
    assert diarizer(Audio(np.zeros(0, dtype=np.float32))).turns == ()

    short = Audio(audio.slice(0.6, 1.4).copy())  # shorter than one 1.5 s embedding window
    got = diarizer(short, [TimeSpan(0.0, short.duration)])
    assert got.num_speakers == 1 and len(got.turns) == 1

    # two voices at once (mixed), then apart: nothing crashes, every turn is well formed
    conv = need_shared("data", "conversations", "conv1.wav")
    c = load_audio(conv)
    a, b = c.slice(0.5, 3.0), c.slice(5.7, 8.2)
    n = min(len(a), len(b))
    mixed = Audio(np.concatenate([a[:n], 0.5 * (a[:n] + b[:n]), b[:n]]).astype(np.float32))
    d = diarizer(mixed)
    assert 1 <= d.num_speakers <= 3
    assert all(t.duration > 0 for t in d.turns)
    assert d.to_rttm("mixed").count("\n") == len(d.turns)


def test_speech_regions_given_and_count_options(diarizer):
    conv = need_shared("data", "conversations", "conv1.wav")
    audio = load_audio(conv)
    regions = [TimeSpan(t.start, t.end) for t in _truth(conv)]
    d = diarizer(audio, regions, min_speakers=2, max_speakers=2)
    assert d.num_speakers == 2
    # turns stay inside the regions given
    assert all(any(r.start - 1e-6 <= t.start and t.end <= r.end + 1e-6 for r in regions) for t in d.turns)
    with pytest.raises(ConfigError):
        diarizer(audio, num_speakers=0)
    with pytest.raises(ConfigError):
        diarizer(audio, min_speakers=3, max_speakers=2)


def test_provenance_without_loading_and_custom_weights(tmp_path):
    from emoflow.diarization import ge2e
    from emoflow.diarization.offline import OfflineDiarizer

    random_net = ge2e.build_encoder()
    d = OfflineDiarizer(model=random_net)  # an already-built model: nothing loads
    p = d.provenance()
    assert p.source == "package" and p.revision.startswith("resemblyzer==")
    assert p.options["backend"] == "ge2e" and p.options["window_s"] == 2.0
    # a custom checkpoint in resemblyzer's format loads, and its provenance is its content hash
    import torch

    ckpt = tmp_path / "enc.pt"
    torch.save({"model_state": random_net.state_dict()}, ckpt)
    custom = OfflineDiarizer(weights=ckpt, device="cpu")
    assert custom.provenance().revision.startswith("sha256:")
    with pytest.raises(ModelUnavailableError):
        OfflineDiarizer(weights=tmp_path / "missing.pt", device="cpu")


def test_pyannote_backend_fails_fast_with_the_fix(monkeypatch, tmp_path):
    """Without pyannote.audio, or without a usable model offline, or without a token: a
    ModelUnavailableError in well under 5 s that names the fix."""
    from emoflow.diarization import pyannote_backend as pb

    for k in pb.TOKEN_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="HF_TOKEN|pip install"):
        make_diarizer("pyannote")
    # the weights checks alone (whether or not pyannote.audio is installed here)
    from emoflow.models import ModelSpec

    with pytest.raises(ModelUnavailableError, match="HF_TOKEN"):
        pb.resolve_pipeline_dir(ModelSpec(pb.DEFAULT_PYANNOTE_MODEL, offline=False), None)
    with pytest.raises(ModelUnavailableError, match="offline"):
        pb.resolve_pipeline_dir(ModelSpec(pb.DEFAULT_PYANNOTE_MODEL, offline=True), "hf_x")
    with pytest.raises(ModelUnavailableError, match="config.yaml"):
        pb.resolve_pipeline_dir(ModelSpec(str(tmp_path)), None)
    assert time.perf_counter() - t0 < 5


@pytest.mark.slow
def test_nuisance_projection_learned_on_other_actors(conversations, tmp_path):
    """Nuisance directions learned, in the test, from RAVDESS actors who are NOT in the
    conversations (every 5th clip of actors 13-19 and 21): measured DER 0.124 with the count
    estimated (0.180 without), the count right on 2 of 3, one speaker still one speaker."""
    pytest.importorskip("pyannote.metrics", reason="DER needs pyannote.metrics (the dev extra)")
    from emoflow.diarization.clustering import nuisance_directions
    from emoflow.diarization.metrics import DiarizationEvaluator
    from emoflow.diarization.offline import OfflineDiarizer, OfflineDiarizerConfig

    ravdess = need_shared("data", "ravdess_sample")
    learner = OfflineDiarizer(OfflineDiarizerConfig.with_nuisance(None), device="cpu")
    embs, who = [], []
    for actor in (13, 14, 15, 16, 17, 18, 19, 21):
        for clip in sorted((ravdess / f"Actor_{actor:02d}").glob("*.flac"))[::5]:
            audio = load_audio(clip)
            regions = learner.preprocess_regions(audio, None)
            if regions:
                embs.append(learner.embed_spans(audio, [TimeSpan(regions[0].start, regions[-1].end)])[0])
                who.append(actor)
    assert len(embs) >= 80
    path = tmp_path / "nuisance.npy"
    np.save(path, nuisance_directions(np.stack(embs), who, rank=4))
    nap = OfflineDiarizer(OfflineDiarizerConfig.with_nuisance(path), device="cpu")
    assert nap.provenance().options["nuisance_sha256"].startswith("sha256:")

    ev, right = DiarizationEvaluator(collar=0.25), 0
    for wav in conversations:
        audio = load_audio(wav)
        s = ev(_truth(wav), list(nap(audio).turns), audio.duration, uri=wav.stem)
        right += s.count_correct
    assert ev.der <= 0.15, f"DER {ev.der:.3f} with nuisance projection (measured 0.124)"
    assert right >= 2
    for name in ("three_moods.wav", "interview.wav"):
        assert nap(load_audio(need_shared("audio", "speech", name))).num_speakers == 1

    with pytest.raises(ConfigError, match="nuisance"):
        OfflineDiarizer(OfflineDiarizerConfig(nuisance=str(tmp_path / "missing.npy")), device="cpu")
