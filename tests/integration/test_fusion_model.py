"""The fusion classifier on synthetic features: what it must learn, and what ablations must not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.fusion.model import CorrelationAwareFusion, FusionConfig
from emoflow.fusion.train import (
    FusionClassifier,
    TrainConfig,
    evaluate_arrays,
    predict_arrays,
    save_checkpoint,
    train_model,
)
from emoflow.testing.synthetic import DA, DT, co_occurring_pairs, separable

LABELS = ("anger", "joy", "neutral", "sadness")
FAST = TrainConfig(epochs=200, patience=30)


def fit_score(kind: str, ablation: str) -> float:
    a, t, y = separable(kind, 1500, 0)
    ta, tt, ty = separable(kind, 400, 1)
    model, _ = train_model(a, t, y, FusionConfig(DA, DT, LABELS, d=64, ablation=ablation), FAST)
    return evaluate_arrays(predict_arrays(model, ta, tt), ty, LABELS, False)["macro_f1"]


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
    save_checkpoint(tmp_path / "m", m1, {"audio_dim": DA, "text_dim": DT}, tc, {})
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
