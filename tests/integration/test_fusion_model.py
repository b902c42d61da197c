"""The fusion classifier on synthetic features: what it must learn, and what ablations must not."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from emoflow.errors import ConfigError, ModelError, ModelUnavailableError
from emoflow.fusion.feature_record import FeatureInfo
from emoflow.fusion.model import ABLATIONS, CorrelationAwareFusion, FusionConfig
from emoflow.fusion.train import (
    CHECKPOINT_VERSION,
    FusionClassifier,
    TrainConfig,
    evaluate_arrays,
    predict_arrays,
    save_checkpoint,
    train_model,
)
from emoflow.provenance import Provenance
from emoflow.testing.synthetic import DA, DT, co_occurring_pairs, separable

LABELS = ("anger", "joy", "neutral", "sadness")
FAST = TrainConfig(epochs=200, patience=30)
# the record of synthetic features: made-up models at the synthetic widths
FEATURES = FeatureInfo(
    Provenance("org/audio", None),
    Provenance("org/text", None),
    Provenance("org/encoder", None, options={"method": "extraction", "pooling": "cls"}),
    Provenance("org/asr", None, options={"backend": "transformers"}),
    3,
    "__",
    DA,
    DT,
)


def fit_score(kind: str, ablation: str) -> float:
    a, t, y = separable(kind, 1500, 0)
    ta, tt, ty = separable(kind, 400, 1)
    model, _ = train_model(a, t, y, FusionConfig(DA, DT, LABELS, d=64, ablation=ablation), FAST)
    return evaluate_arrays(predict_arrays(model, ta, tt), ty, LABELS, False)["macro_f1"]


@pytest.mark.slow  # seven trainings of 200 epochs: minutes of CPU
@pytest.mark.parametrize(("kind", "blind"), [("audio", "text-only"), ("text", "audio-only"), ("joint", None)])
def test_full_model_learns_and_blind_ablations_fail(kind, blind):
    full = fit_score(kind, "full")
    assert full > 0.9, f"{kind}: full model macro-F1 {full:.3f}"
    blinds = [blind] if blind else ["audio-only", "text-only"]
    for b in blinds:
        f1 = fit_score(kind, b)
        print(f"{kind}: full {full:.3f}, {b} {f1:.3f}")
        assert f1 < 0.6, f"{kind}: the {b} ablation should not separate these classes (got {f1:.3f})"


def test_training_is_reproducible_and_checkpoints_round_trip(tmp_path):
    a, t, y = separable("audio", 300, 3)
    cfg = FusionConfig(DA, DT, LABELS, d=32, heads=4)
    tc = TrainConfig(epochs=15, patience=15, seed=7)
    m1, h1 = train_model(a, t, y, cfg, tc)
    m2, h2 = train_model(a, t, y, cfg, tc)
    np.testing.assert_array_equal(predict_arrays(m1, a, t), predict_arrays(m2, a, t))
    assert h1["history"] == h2["history"]
    save_checkpoint(tmp_path / "m", m1, FEATURES, tc, {})
    clf = FusionClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(clf.predict(a, t), predict_arrays(m1, a, t), atol=1e-6)
    assert (
        clf.labels == LABELS
        and abs(clf.scores(a[:1], t[:1])[0].scores[0] - clf.predict(a[:1], t[:1])[0, 0]) < 1e-6
    )
    with pytest.raises(ModelUnavailableError, match="emoflow train"):
        FusionClassifier.load(tmp_path)


def test_label_embeddings_start_from_the_encoder_and_attention_mixes_labels():
    init = torch.randn(4, DT)
    m = CorrelationAwareFusion(FusionConfig(DA, DT, LABELS, d=32), label_init=init)
    assert torch.equal(m.label_emb.data, init)
    z = m.label_embeddings(torch.randn(2, 32))
    assert z.shape == (2, 4, 32)
    with pytest.raises(ConfigError):
        FusionConfig(DA, DT, LABELS, ablation="bogus")


@pytest.mark.slow  # trains two models to convergence
def test_multi_label_with_co_occurring_labels_reports_both():
    """Labels in pairs that always co-occur. Both variants must learn the task; the macro-F1 of
    the correlation module and of the no-correlation ablation are printed (see docs/fusion.md)."""
    a, t, y = co_occurring_pairs(250, 0)
    ta, tt, ty = co_occurring_pairs(1000, 1)
    labels = tuple("abcdef")
    scores = {}
    for ablation in ("full", "no-correlation"):
        cfg = FusionConfig(DA, DT, labels, d=64, ablation=ablation, multi_label=True)
        model, _ = train_model(a, t, y, cfg, FAST)
        m = evaluate_arrays(predict_arrays(model, ta, tt), ty, labels, True)
        scores[ablation] = m["macro_f1"]
        assert 0 <= m["hamming_loss"] < 0.15
    print(
        f"co-occurring labels: correlation module macro-F1 {scores['full']:.3f}, "
        f"no-correlation {scores['no-correlation']:.3f}"
    )
    assert min(scores.values()) > 0.85


# ---- checkpoints rebuild any shapes (issue 10.2) ------------------------------------------------
LABEL_WIDTH = 48  # the sequence encoder's width: differs from DA (32), DT (16) and d (64)


@pytest.mark.parametrize("ablation", ["full", "no-correlation", "text-only", "mlp"])
def test_checkpoint_reloads_when_d_differs_from_the_label_embedding_width(tmp_path, ablation):
    a, t, y = separable("audio", 120, 5)
    cfg = FusionConfig(DA, DT, LABELS, d=64, ablation=ablation)
    init = torch.randn(len(LABELS), LABEL_WIDTH, generator=torch.Generator().manual_seed(1))
    model, _ = train_model(a, t, y, cfg, TrainConfig(epochs=3, patience=3), label_init=init)
    save_checkpoint(tmp_path / "m", model, FEATURES, TrainConfig(), {})
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["checkpoint_version"] == CHECKPOINT_VERSION
    assert meta["model"]["label_dim"] == (None if ablation == "mlp" else LABEL_WIDTH)
    assert FusionConfig.from_dict(meta["model"]) == model.cfg
    clf = FusionClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(clf.predict(a, t), predict_arrays(model, a, t), atol=1e-6)


def test_version_1_checkpoint_without_label_dim_still_loads(tmp_path):
    """Checkpoints written before label_dim was recorded: the width is read from the weights."""
    a, t, y = separable("text", 80, 6)
    init = torch.randn(len(LABELS), LABEL_WIDTH)
    model, _ = train_model(
        a, t, y, FusionConfig(DA, DT, LABELS, d=64), TrainConfig(epochs=2), label_init=init
    )
    save_checkpoint(tmp_path / "m", model, FEATURES, TrainConfig(), {})
    path = tmp_path / "m" / "config.json"
    meta = json.loads(path.read_text())
    del meta["model"]["label_dim"]
    meta["checkpoint_version"] = 1
    path.write_text(json.dumps(meta))
    np.testing.assert_allclose(
        FusionClassifier.load(tmp_path / "m").predict(a, t), predict_arrays(model, a, t), atol=1e-6
    )


def test_broken_or_foreign_checkpoints_are_model_errors(tmp_path):
    a, t, y = separable("audio", 60, 8)
    model, _ = train_model(a, t, y, FusionConfig(DA, DT, LABELS, d=32), TrainConfig(epochs=1))
    d = tmp_path / "m"
    save_checkpoint(d, model, FEATURES, TrainConfig(), {})
    meta = json.loads((d / "config.json").read_text())

    def write(**changes):
        (d / "config.json").write_text(json.dumps({**meta, **changes}))

    write(model={**meta["model"], "d": 64})  # weights of d=32
    with pytest.raises(ModelError, match="does not match config.json.*emoflow train"):
        FusionClassifier.load(d)
    write(model={**meta["model"], "hidden_layers": 3})
    with pytest.raises(ModelError, match="unknown fusion model settings"):
        FusionClassifier.load(d)
    write(checkpoint_version=CHECKPOINT_VERSION + 1)
    with pytest.raises(ModelError, match="newer"):
        FusionClassifier.load(d)
    write()
    (d / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="unreadable"):
        FusionClassifier.load(d)
    torch.save([1, 2, 3], d / "model.pt")  # a readable file that holds no state dict
    with pytest.raises(ModelError, match="holds no weights"):
        FusionClassifier.load(d)


def test_label_init_of_the_wrong_shape_is_refused():
    with pytest.raises(ConfigError, match="label_init has shape"):
        CorrelationAwareFusion(
            FusionConfig(DA, DT, LABELS, d=32, label_dim=24), label_init=torch.zeros(4, 20)
        )


fusion_configs = st.builds(
    FusionConfig,
    audio_dim=st.integers(1, 2048),
    text_dim=st.integers(1, 2048),
    labels=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True).map(tuple),
    d=st.sampled_from([8, 16, 24, 128]),
    heads=st.sampled_from([1, 2, 4, 8]),
    dropout=st.floats(0, 0.9),
    multi_label=st.booleans(),
    ablation=st.sampled_from(ABLATIONS),
    label_dim=st.none() | st.integers(1, 1024),
)


@given(fusion_configs)
def test_fusion_config_round_trip(cfg):
    assert FusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---- small data (issue 10.10) -------------------------------------------------------------------
@pytest.mark.parametrize("labels_of_rows", [[0, 1, 2, 3], [0, 0]], ids=["one-per-class", "one-class-of-two"])
def test_too_little_data_for_validation_trains_on_all_and_says_so(caplog, labels_of_rows):
    a, t, _ = separable("audio", len(labels_of_rows), 9)
    y = np.eye(len(LABELS), dtype=np.float32)[labels_of_rows]
    with caplog.at_level(logging.WARNING, logger="emoflow.fusion.train"):
        model, history = train_model(
            a, t, y, FusionConfig(DA, DT, LABELS, d=32), TrainConfig(epochs=6, patience=6)
        )
    assert "too little data for a validation split" in caplog.text
    assert history["validation"] == 0 and history["best_val_macro_f1"] is None
    assert 0 <= history["best_epoch"] < 6
    losses = [h["loss"] for h in history["history"]]
    assert history["best_epoch"] == int(np.argmin(losses))
    probs = predict_arrays(model, a, t)
    assert probs.shape == (len(labels_of_rows), len(LABELS)) and np.isfinite(probs).all()


# ---- the feature record: checkpoints and caches keep it, older ones still read (issue 12.3) ------
LEGACY_FEATURES = {  # as the first emoflow wrote it: no revisions or sources
    "audio_model": {"id": "org/audio", "revision": None},
    "text_model": {"id": "org/text", "revision": None},
    "sequence_encoder": {
        "method": "extraction",
        "pooling": "layers",
        "id": "org/encoder",
        "revision": None,
        "layers": [-2, -1],
        "weights": [0.5, 0.5],
    },
    "asr_model": {"id": "org/asr", "backend": "transformers"},
    "top_k": 3,
    "separator": "__",
    "audio_dim": DA,
    "text_dim": DT,
}


def legacy_config():
    """The settings that give LEGACY_FEATURES' features (hub ids never downloaded: offline)."""
    from emoflow.config import EmbeddingConfig, PipelineConfig

    return PipelineConfig(
        asr_model="org/asr",
        audio_model="org/audio",
        text_model="org/text",
        encoder_model="org/encoder",
        embedding=EmbeddingConfig("layers", layers=(-2, -1)),
        offline=True,
    )


def test_checkpoints_keep_their_feature_record_and_older_records_still_check(tmp_path, caplog):
    from dataclasses import replace

    from emoflow.config import EmbeddingConfig

    a, t, y = separable("audio", 40, 4)
    model, _ = train_model(a, t, y, FusionConfig(DA, DT, LABELS, d=32), TrainConfig(epochs=1))
    d = tmp_path / "m"
    save_checkpoint(d, model, FEATURES, TrainConfig(), {})
    clf = FusionClassifier.load(d)
    assert clf.features.to_dict() == FEATURES.to_dict()
    clf.check_features(FEATURES)

    meta = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**meta, "checkpoint_version": 1, "features": LEGACY_FEATURES}))
    clf = FusionClassifier.load(d)
    live = FeatureInfo.of(legacy_config())
    assert not clf.features.differences(live)  # the same models and settings; revisions unknown then
    clf.check_features(live)
    config = clf.features.config()  # settings that give the same record
    assert not FeatureInfo.of(config).differences(live) and config.embedding.layers == (-2, -1)
    assert (config.encoder_model, config.embedding.method) == ("org/encoder", "layers")
    assert (config.audio_model, config.text_model, config.asr_model) == ("org/audio", "org/text", "org/asr")
    with pytest.raises(ConfigError, match="trained with sequence_encoder"):
        clf.check_features(FeatureInfo.of(replace(legacy_config(), embedding=EmbeddingConfig("cls"))))
    with pytest.raises(ConfigError, match="trained with top_k"):
        clf.check_features(replace(live, top_k=2))
    with pytest.raises(ConfigError, match="trained with audio_model"):
        clf.check_features(replace(live, audio_model=Provenance("org/other", None)))
    assert not clf.features.differences(replace(live, asr_model=Provenance("org/other-asr", None)))

    # the same model at another revision: accepted, with a warning
    clf = FusionClassifier(clf.model, replace(live, text_model=Provenance("org/text", "a" * 40)), meta, d)
    with caplog.at_level(logging.WARNING, logger="emoflow.fusion.train"):
        clf.check_features(replace(live, text_model=Provenance("org/text", "b" * 40)))
    assert "org/text at revision " + "a" * 40 in caplog.text

    (d / "config.json").write_text(json.dumps({**meta, "features": {"audio_dim": DA, "text_dim": DT}}))
    with pytest.raises(ModelError, match="does not say which features.*emoflow train"):
        FusionClassifier.load(d)


def test_a_feature_cache_from_before_revisions_still_loads(tmp_path):
    from emoflow.fusion.datasets import ManifestRow
    from emoflow.fusion.features import feature_key, load_cached, settings_hash

    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")  # the cache keys rows by the file's path, size and time only
    cache = tmp_path / "cache"
    (cache / "items").mkdir(parents=True)
    (cache / "features.json").write_text(json.dumps(LEGACY_FEATURES))
    row = ManifestRow(str(wav), ("joy",))
    a, t = np.ones(DA, np.float32), np.zeros(DT, np.float32)
    with open(cache / "items" / f"{feature_key(row, settings_hash(LEGACY_FEATURES))}.npz", "wb") as f:
        np.savez(f, audio=a, text=t, sequence=np.array("joy"), transcript=np.array("hi"))
    fs = load_cached([row], cache)
    assert len(fs) == 1 and not fs.failures and fs.info.widths == (DA, DT)
    np.testing.assert_array_equal(fs.audio[0], a)
    assert not FeatureInfo.of(fs.info.config()).differences(FeatureInfo.of(legacy_config()))


def test_a_pipeline_checks_its_fusion_model_without_loading_any_stage(tmp_path):
    """The Ray writer holds only the fusion model: checking it against the analysis' features
    compares records built from the settings, so no audio or text model is loaded for it."""
    from dataclasses import replace

    from emoflow.pipeline import Pipeline

    a, t, y = separable("text", 40, 2)
    model, _ = train_model(a, t, y, FusionConfig(DA, DT, LABELS, d=32), TrainConfig(epochs=1))
    save_checkpoint(tmp_path / "m", model, FeatureInfo.of(legacy_config()), TrainConfig(), {})
    p = Pipeline(replace(legacy_config(), fusion_model=str(tmp_path / "m")))
    assert p.fusion is not None and p.fusion.labels == LABELS
    assert (p._transcriber, p._audio, p._text, p._embedder, p._vad) == (None,) * 5
    other = Pipeline(replace(p.config, text_model="org/other-text"))
    with pytest.raises(ConfigError, match="trained with text_model"):
        _ = other.fusion
    # a derived pipeline keeps the checked model while the features stay the same
    assert p.derive(replace(p.config, max_duration=60.0)).fusion is p.fusion
    assert p.derive(replace(p.config, top_k=2))._fusion is None
