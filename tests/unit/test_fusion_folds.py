"""Speaker-independent cross-validation (``emoflow train --folds K``) and the training options
``--dropout`` / ``--weight-decay``, on synthetic cached features (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emoflow.config import TrainConfig
from emoflow.errors import ConfigError
from emoflow.fusion.folds import cross_validate, format_summary, speaker_folds
from emoflow.fusion.manifest import ManifestRow, write_manifest
from emoflow.fusion.model import FusionConfig
from tests.helpers import run_cli_in_process

LABELS = ("anger", "joy", "sadness")


def rows_of(counts: dict[str, int]) -> list[ManifestRow]:
    return [
        ManifestRow(f"{s}_{i}.wav", (LABELS[i % 3],), speaker=s) for s, n in counts.items() for i in range(n)
    ]


def test_folds_are_speaker_disjoint_cover_everyone_and_balance_rows():
    counts = {f"spk{i:02d}": n for i, n in enumerate([30, 5, 12, 12, 7, 20, 9, 3, 16, 11])}
    folds = speaker_folds(rows_of(counts), 3)
    assert len(folds) == 3
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted(counts) and len(flat) == len(set(flat))
    sizes = [sum(counts[s] for s in f) for f in folds]
    assert max(sizes) - min(sizes) <= 5, sizes  # 125 rows: 41-42 each at best
    # the row order of the manifest does not change the folds
    assert speaker_folds(rows_of(counts)[::-1], 3) == folds


def test_too_many_folds_or_rows_without_speakers_are_usage_errors():
    rows = rows_of({"ana": 4, "bo": 6, "cy": 5})
    with pytest.raises(ConfigError, match=r"--folds 4 is more than the 3 speakers .*\(ana, bo, cy\)"):
        speaker_folds(rows, 4)
    with pytest.raises(ConfigError, match="at least 2"):
        speaker_folds(rows, 1)
    with pytest.raises(ConfigError, match="1 of 16 rows have no speaker"):
        speaker_folds([*rows, ManifestRow("x.wav", ("joy",))], 2)
    assert len(speaker_folds(rows, 3)) == 3  # leave-one-speaker-out


def separable(counts: dict[str, int], seed: int = 0) -> tuple[list[ManifestRow], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rows_of(counts)
    means = rng.standard_normal((len(LABELS), 12)) * 3
    y = np.eye(len(LABELS), dtype=np.float32)[[LABELS.index(r.labels[0]) for r in rows]]
    audio = (means[y.argmax(1)] + rng.standard_normal((len(rows), 12))).astype(np.float32)
    return rows, audio, y


def test_cross_validation_reports_each_fold_and_mean_sd():
    counts = {"a": 15, "b": 12, "c": 18, "d": 9, "e": 13}
    rows, audio, y = separable(counts)
    text = np.zeros((len(rows), 1), np.float32)
    cfg = FusionConfig(12, 1, LABELS, d=16, heads=2, ablation="audio-only")
    cv = cross_validate(rows, audio, text, y, cfg, 3, TrainConfig(epochs=20, patience=5))
    assert cv["folds"] == 3 and cv["speakers"] == 5 and cv["n"] == len(rows)
    per = cv["per_fold"]
    assert sum(f["n_test"] for f in per) == len(rows)
    assert all(f["n_train"] + f["n_test"] == len(rows) for f in per)
    tested = [s for f in per for s in f["test_speakers"]]
    assert sorted(tested) == sorted(counts)
    ua = [f["UA"] for f in per]
    assert cv["mean"]["UA"] == pytest.approx(np.mean(ua)) and cv["sd"]["UA"] == pytest.approx(np.std(ua))
    assert cv["mean"]["UA"] > 0.8  # separable classes, unseen speakers
    assert cv["pooled"]["n"] == len(rows) and "confusion" in cv["pooled"]
    lines = format_summary(cv)
    assert len(lines) == 4 and lines[-1].startswith("3 speaker folds (5 speakers") and "±" in lines[-1]


# ---- through the CLI -----------------------------------------------------------------------------
def synthetic_cache(
    root: Path, replicas: dict[str, Path], counts: dict[str, int], split: str | None = None
) -> Path:
    """A feature cache as `emoflow features` writes it (features.json, keys) with separable
    synthetic features, and its manifest; returns the manifest."""
    from emoflow.config import PipelineConfig
    from emoflow.fusion.features import FeatureInfo, feature_key, settings_hash

    config = PipelineConfig(
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
    info = FeatureInfo.of(config, audio_dim=12, text_dim=6)
    cache = root / "cache"
    (cache / "items").mkdir(parents=True)
    (cache / "features.json").write_text(json.dumps(info.to_dict()))
    settings = settings_hash(info)
    rows, audio, _ = separable(counts, seed=1)
    out = []
    for i, (row, a) in enumerate(zip(rows, audio, strict=True)):
        clip = root / "clips" / row.audio
        clip.parent.mkdir(exist_ok=True)
        clip.write_bytes(b"x" * (i + 1))
        row = ManifestRow(str(clip), row.labels, text=f"row {i}", speaker=row.speaker, split=split)
        with open(cache / "items" / f"{feature_key(row, settings)}.npz", "wb") as f:
            t = np.zeros(6, np.float32)
            np.savez(f, audio=a, text=t, sequence=np.array(row.labels[0]), transcript=np.array(row.text))
        out.append(row)
    write_manifest(out, root / "manifest.csv")
    return root / "manifest.csv"


def test_train_folds_prints_mean_sd_writes_json_and_trains_the_final_model(tmp_path, replicas):
    counts = {"ana": 10, "bo": 14, "cy": 11, "dee": 13}
    manifest = synthetic_cache(tmp_path, replicas, counts)
    model = tmp_path / "model"
    r = run_cli_in_process(
        "train",
        str(manifest),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(model),
        "--ablation",
        "audio-only",
        "--folds",
        "3",
        "--epochs",
        "15",
        "--dropout",
        "0.35",
        "--weight-decay",
        "0.07",
        "--dim",
        "16",
        "--correlation",
        "labels",
    )
    assert r.returncode == 0, r.stderr
    assert "3 speaker folds (4 speakers, 48 rows): UA" in r.stderr and "±" in r.stderr
    assert r.stderr.count("fold ") >= 3 and "cv_metrics.json" in r.stderr
    cv = json.loads((model / "cv_metrics.json").read_text())
    assert [len(f["test_speakers"]) for f in cv["per_fold"]] in ([2, 1, 1], [1, 2, 1], [1, 1, 2])
    assert sorted(s for f in cv["per_fold"] for s in f["test_speakers"]) == sorted(counts)
    assert {"UA", "WA", "macro_f1"} <= set(cv["mean"]) == set(cv["sd"])
    assert (model / "cv_confusion.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["cv"]["mean"] == cv["mean"] and metrics["train"]["n"] == 48  # final model: all rows
    config = json.loads((model / "config.json").read_text())
    assert config["model"]["dropout"] == 0.35 and config["train"]["weight_decay"] == 0.07
    assert config["model"]["correlation"] == "labels"


def test_train_folds_beyond_the_speakers_is_a_usage_error(tmp_path, replicas):
    manifest = synthetic_cache(tmp_path, replicas, {"ana": 6, "bo": 7})
    cache, model = tmp_path / "cache", tmp_path / "model"
    r = run_cli_in_process("train", str(manifest), "--cache", str(cache), "--out", str(model), "--folds", "5")
    assert r.returncode == 2 and "--folds 5" in r.stderr and "2 speakers" in r.stderr, r.stderr
    assert not model.exists()  # nothing written
    r = run_cli_in_process(
        "train", str(manifest), "--cache", str(cache), "--out", str(model), "--dropout", "1"
    )
    assert r.returncode == 2 and "--dropout" in r.stderr, r.stderr
    r = run_cli_in_process(
        "train", str(manifest), "--cache", str(cache), "--out", str(model), "--correlation", "both"
    )
    assert r.returncode == 2 and "unknown correlation 'both'" in r.stderr, r.stderr
    assert not model.exists()


def test_train_folds_leave_test_rows_out(tmp_path, replicas):
    """Rows of the manifest's test split are neither in the folds nor in the final training:
    they still evaluate the final model."""
    manifest = synthetic_cache(tmp_path, replicas, {"ana": 9, "bo": 8, "cy": 10})
    from emoflow.fusion.manifest import read_manifest

    rows = read_manifest(manifest)
    from dataclasses import replace

    write_manifest([replace(r, split="test" if r.speaker == "cy" else "train") for r in rows], manifest)
    model = tmp_path / "model"
    args = ("--cache", str(tmp_path / "cache"), "--out", str(model), "--epochs", "10", "--dim", "16")
    r = run_cli_in_process("train", str(manifest), *args, "--folds", "2")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["cv"]["n"] == 17 and metrics["cv"]["speakers"] == 2
    assert metrics["train"]["n"] == 17 and metrics["test"]["n"] == 10
