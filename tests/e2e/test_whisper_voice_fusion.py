"""Issue 15's "done when", end to end through the CLI with REAL weights on REAL emotional speech:
the real Whisper tiny.en encoder as the voice branch, RAVDESS clips (FLAC) → ``dataset build`` →
``features --audio-layers all`` → ``train --ablation audio-only`` → ``evaluate`` on actors it
never saw → ``analyze --fusion-model``: voice scores from the trained classifier for sentences,
utterance and timeline; ``train --folds``; and a bare encoder without a fusion model gives
"no voice scores" cleanly."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from emoflow.fusion.manifest import read_manifest, write_manifest
from tests.helpers import need_shared, run_cli_in_process

pytestmark = pytest.mark.slow  # ~220 real clips through Whisper, then trainings

LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")  # calm -> neutral
TRAIN_ACTORS = tuple(f"ravdess_{a}" for a in range(13, 19))
TEST_ACTORS = ("ravdess_23", "ravdess_24")
# the classifier's settings for Whisper features (issue 15's benchmark: dropout 0.5, weight decay 0.1)
SETTINGS = ("--ablation", "audio-only", "--dropout", "0.5", "--weight-decay", "0.1", "--seed", "0")


@dataclass(frozen=True)
class Work:
    root: Path
    manifest: Path  # strong-intensity clips: TRAIN_ACTORS "train", TEST_ACTORS "test"
    cache: Path
    models: list[str]
    features: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, replicas: dict[str, Path], whisper_tiny_dir: Path) -> Work:
    data = need_shared("data", "ravdess_sample")
    root = tmp_path_factory.mktemp("whisper_voice")
    r = run_cli_in_process(
        "dataset", "build", str(data), "--layout", "ravdess", "--out", str(root / "all.csv"), "--no-split"
    )
    assert r.returncode == 0, r.stderr
    rows = [
        replace(r, split="train" if r.speaker in TRAIN_ACTORS else "test")
        for r in read_manifest(root / "all.csv")
        if r.extra.get("intensity") == "02" and r.speaker in (*TRAIN_ACTORS, *TEST_ACTORS)
    ]
    assert len(rows) == 28 * (len(TRAIN_ACTORS) + len(TEST_ACTORS)) and all(
        r.audio.endswith(".flac") for r in rows
    )
    write_manifest(rows, root / "manifest.csv")
    models = [
        "--audio-model",
        str(whisper_tiny_dir),
        "--audio-layers",
        "all",
        "--text-model",
        str(replicas["text-emotion"]),
        "--encoder-model",
        str(replicas["distilbert"]),
        "--asr-model",
        str(whisper_tiny_dir),
    ]
    cache = root / "cache"
    features = run_cli_in_process("features", str(root / "manifest.csv"), "--out", str(cache), *models)
    return Work(root, root / "manifest.csv", cache, models, features)


@pytest.fixture(scope="module")
def voice_model(work: Work) -> Path:
    model = work.root / "voice-model"
    r = run_cli_in_process(
        "train", str(work.manifest), "--cache", str(work.cache), "--out", str(model), *SETTINGS
    )
    assert r.returncode == 0, r.stderr
    return model


def test_features_of_flac_clips_record_the_encoder_and_layers(work):
    assert work.features.returncode == 0, work.features.stderr
    assert "224 rows with features" in work.features.stderr
    record = json.loads((work.cache / "features.json").read_text())
    assert (record["audio_model"]["encoder"], record["audio_model"]["layers"]) == ("whisper", "all")
    assert record["audio_dim"] == 5 * 384  # input embeddings + 4 layers of Whisper tiny, concatenated


def test_classifier_recognises_emotions_of_actors_it_never_saw(work, voice_model):
    """Chance is 1/7 = 0.14. Measured here (6 training actors, 2 test actors, strong intensity,
    seed 0): UA 0.54 through the CLI (0.68 with the same features and settings trained on arrays,
    without the replica text encoder's label embeddings); 2-actor test sets vary a lot (0.48-0.79
    over the folds below). The bound, 0.40, is 2.8x chance with room for that noise."""
    r = run_cli_in_process("evaluate", str(voice_model), str(work.manifest), "--cache", str(work.cache))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["n"] == 56
    assert m["UA"] > 0.40 and m["macro_f1"] > 0.30, m


def test_speaker_folds_over_all_the_actors(work, tmp_path):
    """4 folds of 2 actors over the 8 actors (each fold trains on 6, as the held-out split does).
    Measured (seed 0): mean UA 0.60 ± 0.12 (folds 0.48-0.79); bound 0.35 (2.5x chance)."""
    rows = [replace(r, split=None) for r in read_manifest(work.manifest)]
    write_manifest(rows, tmp_path / "all.csv")
    model = tmp_path / "cv-model"
    r = run_cli_in_process(
        "train",
        str(tmp_path / "all.csv"),
        "--cache",
        str(work.cache),
        "--out",
        str(model),
        "--folds",
        "4",
        *SETTINGS,
    )
    assert r.returncode == 0, r.stderr
    assert "4 speaker folds (8 speakers, 224 rows): UA" in r.stderr
    cv = json.loads((model / "cv_metrics.json").read_text())
    assert [len(f["test_speakers"]) for f in cv["per_fold"]] == [2, 2, 2, 2]
    assert cv["mean"]["UA"] > 0.35, cv


def test_analyze_gets_voice_scores_from_the_trained_classifier(work, voice_model, tmp_path):
    speech = need_shared("audio", "speech", "three_moods.wav")
    r = run_cli_in_process(
        "analyze",
        str(speech),
        "--out",
        str(tmp_path),
        *work.models,
        "--fusion-model",
        str(voice_model),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "three_moods" / "result.json").read_text())
    voice_record = res["models"]["audio_emotion"]
    assert (voice_record["encoder"], voice_record["layers"]) == ("whisper", "all")
    assert res["sentences"]
    for s in res["sentences"]:
        voice = s["audio_emotion"]
        assert set(voice["labels"]) == set(LABELS) and abs(sum(voice["scores"]) - 1) < 1e-4
    utterance = res["utterance"]["audio_emotion"]
    assert set(utterance["labels"]) == set(LABELS) and abs(sum(utterance["scores"]) - 1) < 1e-4
    timeline = res["timeline"]
    assert set(timeline["labels"]) == set(LABELS) and timeline["windows"]
    assert all(len(w["scores"]) == len(LABELS) for w in timeline["windows"])


def test_a_bare_encoder_without_a_fusion_model_gives_no_voice_scores(work, tmp_path):
    speech = need_shared("audio", "speech", "three_moods.wav")
    r = run_cli_in_process("analyze", str(speech), "--out", str(tmp_path), *work.models, "--format", "json")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "three_moods" / "result.json").read_text())
    assert res["utterance"]["audio_emotion"]["labels"] == []
    assert res["sentences"] and all(s["audio_emotion"]["labels"] == [] for s in res["sentences"])
