"""The fusion workflow end to end through the CLI, on the shared speech with tiny replicas:
manifest → features → train → evaluate → predict → analyze --fusion-model."""

from __future__ import annotations

import json

import pytest

from emoflow.fusion.datasets import ManifestRow, write_manifest
from tests.conftest import run_cli, speech_files, truth_for

pytestmark = pytest.mark.slow


def label_for(text: str) -> str:
    t = text.lower()
    if any(w in t for w in ("happy", "better", "fine")):
        return "joy"
    if any(w in t for w in ("sad", "terrible", "scared")):
        return "sadness"
    if "?" in t:
        return "surprise"
    return "neutral"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, replicas, whisper_tiny_dir):
    files = speech_files()
    if not files:
        pytest.skip("needs ../shared/audio/speech")
    d = tmp_path_factory.mktemp("fusion")
    rows = []
    for f in files:
        split = "train" if f.stem.startswith("interview") else "test"
        for i, s in enumerate(truth_for(f)["sentences"]):
            text = None if (f.stem == "interview" and i == 0) else s["text"]  # one row goes through ASR
            rows.append(
                ManifestRow(
                    str(f), (label_for(s["text"]),), s["start"], s["end"], text, speaker=f.stem, split=split
                )
            )
    rows.append(ManifestRow(str(d / "missing.wav"), ("joy",), speaker="x", split="train"))
    write_manifest(rows, d / "manifest.csv")
    models = [
        "--audio-model",
        str(replicas["emotion2vec"]),
        "--text-model",
        str(replicas["text-emotion"]),
        "--encoder-model",
        str(replicas["distilbert"]),
    ]
    return d, models, whisper_tiny_dir, len(rows)


def test_features_train_evaluate_predict_analyze(workdir):
    d, models, whisper, n_rows = workdir
    r = run_cli(
        "features", str(d / "manifest.csv"), "--out", str(d / "cache"), *models, "--asr-model", str(whisper)
    )
    assert r.returncode == 3 and "missing.wav" in r.stderr and f"{n_rows - 1} rows with features" in r.stderr
    items = sorted((d / "cache" / "items").iterdir())
    assert len(items) == n_rows - 1
    mtimes = [p.stat().st_mtime_ns for p in items]
    r = run_cli(
        "features", str(d / "manifest.csv"), "--out", str(d / "cache"), *models, "--asr-model", str(whisper)
    )
    assert [
        p.stat().st_mtime_ns for p in sorted((d / "cache" / "items").iterdir())
    ] == mtimes  # resumed: no rework

    r = run_cli(
        "train",
        str(d / "manifest.csv"),
        "--cache",
        str(d / "cache"),
        "--out",
        str(d / "model"),
        "--epochs",
        "30",
        "--patience",
        "10",
        "--dim",
        "32",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((d / "model" / "config.json").read_text())
    assert cfg["model"]["labels"] and cfg["features"]["audio_model"]["id"].endswith("emotion2vec")
    assert cfg["label_init"] is True
    metrics = json.loads((d / "model" / "metrics.json").read_text())
    assert {"WA", "UA", "macro_f1", "weighted_f1", "confusion"} <= set(metrics["test"])
    assert (d / "model" / "test_confusion.png").read_bytes()[:4] == b"\x89PNG"

    r = run_cli("evaluate", str(d / "model"), str(d / "manifest.csv"), "--cache", str(d / "cache"))
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == metrics["test"]["n"] and ev["WA"] == pytest.approx(metrics["test"]["WA"])

    three = next(f for f in speech_files() if f.stem == "three_moods")
    r = run_cli("predict", str(d / "model"), str(three))
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout.splitlines()[0])
    assert pred["label"] in cfg["model"]["labels"] and abs(sum(pred["scores"]) - 1) < 1e-4

    r = run_cli(
        "analyze",
        str(three),
        "--out",
        str(d / "out"),
        *models,
        "--asr-model",
        str(whisper),
        "--fusion-model",
        str(d / "model"),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((d / "out" / "three_moods" / "result.json").read_text())
    assert all(set(s["fused"]["labels"]) == set(cfg["model"]["labels"]) for s in res["sentences"])
    assert res["models"]["fusion"]["id"] == str(d / "model")


def test_fusion_model_with_other_feature_models_is_refused(workdir, replicas, tmp_path):
    d, models, whisper, _ = workdir
    if not (d / "model").exists():
        pytest.skip("needs the trained model of the previous test")
    r = run_cli(
        "analyze",
        str(speech_files()[0]),
        "--out",
        str(tmp_path),
        *models,
        "--embedding",
        "layers",
        "--asr-model",
        str(whisper),
        "--fusion-model",
        str(d / "model"),
    )
    assert r.returncode == 3 and "trained with sequence_encoder" in r.stderr


def test_labels_outside_the_candidates(workdir, tmp_path):
    d, _, _, _ = workdir
    write_manifest([ManifestRow(str(speech_files()[0]), ("calm",), split="train")], tmp_path / "m.csv")
    r = run_cli(
        "train",
        str(tmp_path / "m.csv"),
        "--cache",
        str(d / "cache"),
        "--out",
        str(tmp_path / "m"),
        "--labels",
        "joy,neutral",
    )
    assert r.returncode == 3 and "'calm'" in r.stderr
