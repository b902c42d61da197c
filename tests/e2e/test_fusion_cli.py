"""The fusion workflow end to end through the CLI, on the shared speech with tiny replicas:
manifest → features → train → evaluate → predict → analyze --fusion-model."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from emoflow.fusion.datasets import ManifestRow, read_manifest, write_manifest
from tests.helpers import need_shared, run_cli, run_cli_in_process, speech_files, truth_for

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


@dataclass(frozen=True)
class Workdir:
    """A manifest over the shared speech (one row goes through ASR, one names a missing file)."""

    root: Path
    manifest: Path
    models: list[str]  # --audio-model, --text-model, --encoder-model: the tiny replicas
    whisper: Path
    n_rows: int

    @property
    def all_models(self) -> list[str]:
        return [*self.models, "--asr-model", str(self.whisper)]


@dataclass(frozen=True)
class Features:
    """The first ``emoflow features`` run over the manifest: its outcome and the cache it wrote."""

    run: subprocess.CompletedProcess[str]
    cache: Path
    mtimes: list[int]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, replicas, whisper_tiny_dir) -> Workdir:
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
    return Workdir(d, d / "manifest.csv", models, whisper_tiny_dir, len(rows))


@pytest.fixture(scope="module")
def features(workdir) -> Features:
    cache = workdir.root / "cache"
    r = run_cli_in_process("features", str(workdir.manifest), "--out", str(cache), *workdir.all_models)
    mtimes = [p.stat().st_mtime_ns for p in sorted((cache / "items").iterdir())]
    return Features(r, cache, mtimes)


@pytest.fixture(scope="module")
def trained(workdir, features) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``emoflow train`` on the cache with the default --dim (128) on the tiny encoder's 32-d
    features: the model must still reload."""
    model = workdir.root / "model"
    r = run_cli_in_process(
        "train",
        str(workdir.manifest),
        "--cache",
        str(features.cache),
        "--out",
        str(model),
        "--epochs",
        "30",
        "--patience",
        "10",
    )
    return r, model


@pytest.fixture(scope="module")
def three_moods() -> Path:
    return need_shared("audio", "speech", "three_moods.wav")


def test_features_skip_the_missing_file_and_resume_without_rework(workdir, features):
    r = features.run
    assert r.returncode == 3 and "missing.wav" in r.stderr, r.stderr
    assert f"{workdir.n_rows - 1} rows with features" in r.stderr
    assert len(features.mtimes) == workdir.n_rows - 1
    r = run_cli_in_process(
        "features", str(workdir.manifest), "--out", str(features.cache), *workdir.all_models
    )
    assert r.returncode == 3
    items = sorted((features.cache / "items").iterdir())
    assert [p.stat().st_mtime_ns for p in items] == features.mtimes  # resumed: no rework


def test_train_writes_model_metrics_and_confusion(trained):
    r, model = trained
    assert r.returncode == 0, r.stderr
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["model"]["labels"] and cfg["features"]["audio_model"]["id"].endswith("emotion2vec")
    assert cfg["label_init"] is True
    assert (cfg["model"]["d"], cfg["model"]["label_dim"], cfg["model"]["text_dim"]) == (128, 32, 32)
    metrics = json.loads((model / "metrics.json").read_text())
    assert {"WA", "UA", "macro_f1", "weighted_f1", "confusion"} <= set(metrics["test"])
    assert (model / "test_confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_reproduces_the_training_test_metrics(workdir, features, trained):
    _, model = trained
    metrics = json.loads((model / "metrics.json").read_text())
    r = run_cli_in_process("evaluate", str(model), str(workdir.manifest), "--cache", str(features.cache))
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == metrics["test"]["n"] and ev["WA"] == pytest.approx(metrics["test"]["WA"])


def test_predict_a_whole_recording(trained, three_moods):
    _, model = trained
    labels = json.loads((model / "config.json").read_text())["model"]["labels"]
    r = run_cli_in_process("predict", str(model), str(three_moods))
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout.splitlines()[0])
    assert pred["label"] in labels and abs(sum(pred["scores"]) - 1) < 1e-4


def test_analyze_with_the_fusion_model(workdir, trained, three_moods, tmp_path):
    _, model = trained
    labels = json.loads((model / "config.json").read_text())["model"]["labels"]
    r = run_cli_in_process(
        "analyze",
        str(three_moods),
        "--out",
        str(tmp_path),
        *workdir.all_models,
        "--fusion-model",
        str(model),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "three_moods" / "result.json").read_text())
    assert all(set(s["fused"]["labels"]) == set(labels) for s in res["sentences"])
    assert res["models"]["fusion"]["id"] == str(model)


def test_fusion_model_with_other_feature_models_is_refused(workdir, trained, three_moods, tmp_path):
    _, model = trained
    r = run_cli_in_process(
        "analyze",
        str(three_moods),
        "--out",
        str(tmp_path),
        *workdir.all_models,
        "--embedding",
        "layers",
        "--fusion-model",
        str(model),
    )
    assert r.returncode == 3 and "trained with sequence_encoder" in r.stderr


def test_labels_outside_the_candidates(features, tmp_path):
    """Through the real entry point in its own process: a bad manifest exits with code 3."""
    write_manifest([ManifestRow(str(speech_files()[0]), ("calm",), split="train")], tmp_path / "m.csv")
    r = run_cli(
        "train",
        str(tmp_path / "m.csv"),
        "--cache",
        str(features.cache),
        "--out",
        str(tmp_path / "m"),
        "--labels",
        "joy,neutral",
    )
    assert r.returncode == 3 and "'calm'" in r.stderr


def test_train_with_one_example_per_class_trains_on_all_and_says_so(workdir, features, tmp_path):
    """Issue 10.10: no class can lend a validation example, so it trains on all rows, and says so."""
    by_label: dict[tuple[str, ...], ManifestRow] = {}
    for row in read_manifest(workdir.manifest):
        if not row.audio.endswith("missing.wav"):
            by_label.setdefault(row.labels, replace(row, split="train"))
    assert len(by_label) >= 2
    write_manifest(by_label.values(), tmp_path / "m.csv")
    r = run_cli_in_process(
        "train",
        str(tmp_path / "m.csv"),
        "--cache",
        str(features.cache),
        "--out",
        str(tmp_path / "m"),
        "--epochs",
        "5",
    )
    assert r.returncode == 0, r.stderr
    assert "too little data for a validation split" in r.stderr and "no validation rows" in r.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 0 and metrics["best_val_macro_f1"] is None
    assert metrics["train"]["n"] == len(by_label)


# ---- real-sized feature widths (issue 10.2) -----------------------------------------------------
REAL_AUDIO_DIM, REAL_TEXT_DIM = 1024, 768  # emotion2vec_plus_large, DistilBERT
REAL_LABELS = ("anger", "joy", "neutral", "sadness")


def build_wide_emotion2vec(out: Path) -> Path:
    """An emotion2vec replica at the real model's width (1024) but one layer deep."""
    import torch
    import yaml
    from funasr.models.emotion2vec.model import Emotion2vec

    from emoflow.testing.replicas import E2V_TOKENS, _e2v_config

    cfg = _e2v_config(embed_dim=REAL_AUDIO_DIM, depth=1, heads=16, prenet_depth=1, conv_dim=32)
    cfg["model_conf"]["modalities"]["audio"].update(conv_pos_depth=1, conv_pos_width=15)  # keep it small
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(
        yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    (out / "tokens.txt").write_text("\n".join(E2V_TOKENS) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    torch.save(
        Emotion2vec(model_conf=cfg["model_conf"], vocab_size=len(E2V_TOKENS)).state_dict(), out / "model.pt"
    )
    return out


def build_wide_distilbert(out: Path, tiny: Path) -> Path:
    """A DistilBERT replica at the real width (768), 4 narrow layers, the tiny replica's vocabulary."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    tok = DistilBertTokenizerFast.from_pretrained(tiny)
    torch.manual_seed(0)
    cfg = DistilBertConfig(
        vocab_size=len(tok),
        dim=REAL_TEXT_DIM,
        n_layers=4,  # the default layer pooling reads the last 4
        n_heads=12,
        hidden_dim=256,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    DistilBertModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def wide_models(tmp_path_factory, replicas, whisper_tiny_dir) -> list[str]:
    root = tmp_path_factory.mktemp("wide")
    return [
        "--audio-model",
        str(build_wide_emotion2vec(root / "emotion2vec")),
        "--text-model",
        str(replicas["text-emotion"]),
        "--encoder-model",
        str(build_wide_distilbert(root / "distilbert", replicas["distilbert"])),
        "--asr-model",
        str(whisper_tiny_dir),
    ]


def synthetic_cache(models: list[str], cache: Path, manifest: Path) -> None:
    """A feature cache as `emoflow features` writes it for these models (same features.json, keys and
    label embeddings), holding synthetic class-separable features at the real widths."""
    import numpy as np

    from emoflow.config import PipelineConfig
    from emoflow.fusion.features import FeatureExtractor
    from emoflow.pipeline import Pipeline

    opts = dict(zip(models[::2], models[1::2], strict=True))
    config = PipelineConfig(
        audio_model=opts["--audio-model"],
        text_model=opts["--text-model"],
        encoder_model=opts["--encoder-model"],
        asr_model=opts["--asr-model"],
    )
    ext = FeatureExtractor(Pipeline(config))
    assert ext.info.widths == (REAL_AUDIO_DIM, REAL_TEXT_DIM)
    (cache / "items").mkdir(parents=True)
    (cache / "features.json").write_text(json.dumps(ext.info.to_dict()))
    ext.save_label_embeddings(cache, REAL_LABELS)
    rng = np.random.default_rng(0)
    means_a = rng.standard_normal((len(REAL_LABELS), REAL_AUDIO_DIM))
    means_t = rng.standard_normal((len(REAL_LABELS), REAL_TEXT_DIM))
    rows = []
    files = speech_files()
    for i in range(60):  # 40 train, 8 val, 12 test
        c = i % len(REAL_LABELS)
        split = "train" if i < 40 else "val" if i < 48 else "test"
        row = ManifestRow(
            str(files[i % len(files)]),
            (REAL_LABELS[c],),
            round(0.01 * i, 2),
            1.0,
            f"row {i}",
            f"s{i % 5}",
            split,
        )
        a = (rng.standard_normal(REAL_AUDIO_DIM) + 2 * means_a[c]).astype(np.float32)
        t = (rng.standard_normal(REAL_TEXT_DIM) + 2 * means_t[c]).astype(np.float32)
        with open(cache / "items" / f"{ext.key(row)}.npz", "wb") as f:
            np.savez(f, audio=a, text=t, sequence=np.array(REAL_LABELS[c]), transcript=np.array(row.text))
        rows.append(row)
    write_manifest(rows, manifest)


def test_real_sized_features_train_with_default_dim_then_evaluate_predict_analyze(wide_models, tmp_path):
    """1024-d audio + 768-d text features, trained with the default --dim 128: the model reloads in
    evaluate, predict and analyze --fusion-model."""
    three = next((f for f in speech_files() if f.stem == "three_moods"), None)
    if three is None:
        pytest.skip("needs ../shared/audio/speech/three_moods.wav")
    cache, manifest, model = tmp_path / "cache", tmp_path / "manifest.csv", tmp_path / "model"
    synthetic_cache(wide_models, cache, manifest)

    r = run_cli_in_process(
        "train", str(manifest), "--cache", str(cache), "--out", str(model), "--epochs", "20"
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((model / "config.json").read_text())["model"]
    assert (cfg["audio_dim"], cfg["text_dim"], cfg["d"], cfg["label_dim"]) == (1024, 768, 128, 768)
    test = json.loads((model / "metrics.json").read_text())["test"]
    assert test["n"] == 12 and test["WA"] > 0.5  # separable classes: it learnt something

    r = run_cli_in_process("evaluate", str(model), str(manifest), "--cache", str(cache))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["WA"] == pytest.approx(test["WA"])

    r = run_cli_in_process("predict", str(model), str(three))
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout.splitlines()[0])
    assert pred["label"] in REAL_LABELS and abs(sum(pred["scores"]) - 1) < 1e-4

    out = tmp_path / "out"
    r = run_cli_in_process(
        "analyze",
        str(three),
        "--out",
        str(out),
        *wide_models,
        "--fusion-model",
        str(model),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "three_moods" / "result.json").read_text())
    assert res["sentences"] and all(set(s["fused"]["labels"]) == set(REAL_LABELS) for s in res["sentences"])
