"""The ``pyannote`` diarisation backend on a replica of the community-1 pipeline: pyannote's own
classes (PyanNet segmentation, WeSpeaker ResNet34 embedding, VBx clustering with PLDA) with random
weights, loaded by ``Pipeline.from_pretrained(folder)`` and run on waveforms, offline.

Random weights say nothing about quality: these tests check the loading and inference code path,
the contract (turns, labels, counts, provenance) and the failures, not who spoke when.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from emoflow.audio.io import Audio
from emoflow.diarization import Diarization, make_diarizer
from emoflow.diarization.pyannote_backend import pyannote_installed
from emoflow.errors import AudioError, ConfigError, ModelError

pytestmark = pytest.mark.skipif(
    not pyannote_installed(),
    reason="pyannote.audio is not installed (pip install 'emoflow[diarization-pyannote]')",
)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The replica pipeline folder (imports pyannote.audio: skips, with the reason, where it does
    not import)."""
    from emoflow.diarization.pyannote_compat import prepare_pyannote_import

    try:
        prepare_pyannote_import()  # no telemetry; PyPI's CUDA torchaudio next to a CPU torch works
        from pyannote.audio import Pipeline  # noqa: F401
    except Exception as e:
        pytest.skip(f"pyannote.audio does not import here ({type(e).__name__}: {str(e)[:160]})")
    from emoflow.testing.pyannote_replica import build_pyannote_pipeline

    return build_pyannote_pipeline(tmp_path_factory.mktemp("pyannote") / "community-1-replica")


def _two_voices(seconds: float, rate: int = 16000) -> Audio:
    """Alternating 'voices' (harmonic buzz at two pitches, noise on top), 2.5 s each."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    pitch = np.where((t // 2.5) % 2 == 0, 120.0, 210.0)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 8))
    return Audio((0.2 * buzz + 0.02 * rng.normal(size=t.size)).astype(np.float32))


def test_pipeline_folder_loads_with_pyannote_itself(pipeline_dir):
    from pyannote.audio import Pipeline
    from pyannote.audio.pipelines import SpeakerDiarization

    assert {p.name for p in pipeline_dir.iterdir()} == {"config.yaml", "segmentation", "embedding", "plda"}
    pipeline = Pipeline.from_pretrained(pipeline_dir)
    assert isinstance(pipeline, SpeakerDiarization)
    assert pipeline.klustering == "VBxClustering"


def test_backend_runs_on_the_replica(pipeline_dir):
    import torch

    from emoflow.diarization.pyannote_backend import PyannoteDiarizer

    threads = torch.get_num_threads()
    d = make_diarizer("pyannote", model=str(pipeline_dir), device="cpu")
    assert isinstance(d, PyannoteDiarizer)
    assert torch.get_num_threads() == threads, "loading must not change the thread policy"
    assert PyannoteDiarizer(str(pipeline_dir), device="cpu").pipeline is d.pipeline  # loaded once

    audio = _two_voices(10.0)
    t0 = time.perf_counter()
    got = d(audio)
    elapsed = time.perf_counter() - t0
    assert isinstance(got, Diarization)
    assert got.backend["backend"] == "pyannote"
    assert got.backend["model"]["source"] == "local"
    assert got.backend["model"]["revision"].startswith("sha256:")
    assert got.backend["estimated_speakers"] == got.num_speakers
    assert got.speakers == tuple(f"SPEAKER_{i:02d}" for i in range(got.num_speakers))
    assert all(0.0 <= t.start < t.end <= audio.duration + 1e-6 for t in got.turns)
    assert got.to_rttm("replica").count("\n") == len(got.turns)
    assert elapsed < 30, f"10 s of audio took {elapsed:.1f} s on the replica"

    # the count options reach pyannote (random weights: what comes back is not checked)
    for out in (d(audio, num_speakers=2), d(audio, min_speakers=1, max_speakers=3)):
        assert out.backend["backend"] == "pyannote" and out.num_speakers <= 3

    assert d.provenance().revision == got.backend["model"]["revision"]


def test_edge_cases_and_bad_input(pipeline_dir):
    d = make_diarizer("pyannote", model=str(pipeline_dir), device="cpu")
    empty = d(Audio(np.zeros(0, dtype=np.float32)))
    assert empty.turns == () and empty.backend["estimated_speakers"] == 0
    short = d(_two_voices(1.3))  # shorter than one 10 s segmentation chunk
    assert all(0.0 <= t.start < t.end <= 1.3 + 1e-6 for t in short.turns)
    with pytest.raises(AudioError, match="16000 Hz"):
        d(Audio(np.zeros(8000, dtype=np.float32), sample_rate=8000))
    with pytest.raises(ConfigError):
        d(_two_voices(2.0), num_speakers=0)
    with pytest.raises(ConfigError):
        d(_two_voices(2.0), min_speakers=3, max_speakers=2)


def test_a_broken_pipeline_folder_is_a_model_error(pipeline_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pipeline_dir, broken)
    (broken / "embedding" / "pytorch_model.bin").unlink()
    with pytest.raises(ModelError, match="did not load"):
        make_diarizer("pyannote", model=str(broken), device="cpu")


@pytest.mark.slow
def test_analyze_with_the_pyannote_backend(pipeline_dir, tmp_path, replica_args):
    """``emoflow analyze --diarize --diarizer pyannote --diarizer-model REPLICA``: the whole
    product path (stage, model cache, provenance, outputs) on the pyannote pipeline."""
    import json

    from emoflow.results import validate_result
    from tests.helpers import need_shared, run_cli_in_process

    conv = need_shared("data", "conversations", "conv1.wav")
    out = tmp_path / "out"
    r = run_cli_in_process(
        "analyze",
        str(conv),
        "--out",
        str(out),
        "--diarize",
        "--diarizer",
        "pyannote",
        "--diarizer-model",
        str(pipeline_dir),
        *replica_args,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((out / "conv1" / "result.json").read_text(encoding="utf-8"))
    validate_result(d)
    assert d["models"]["diarization"]["backend"] == "pyannote"
    assert d["models"]["diarization"]["revision"].startswith("sha256:")
    speakers = d["diarization"]["speakers"]
    assert speakers and all(s["speaker"] in speakers for s in d["sentences"])
    assert (out / "conv1" / "diarization.rttm").read_text().count("\n") == len(d["diarization"]["turns"])
