"""The correlation module over the label embeddings (``correlation="labels"``, issue 15.5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emoflow.errors import ConfigError
from emoflow.fusion.feature_record import FeatureInfo
from emoflow.fusion.model import CorrelationAwareFusion, FusionConfig
from emoflow.fusion.train import (
    FusionClassifier,
    TrainConfig,
    evaluate_arrays,
    predict_arrays,
    save_checkpoint,
    train_model,
)
from emoflow.provenance import Provenance
from emoflow.testing.synthetic import DA, DT, co_occurring_pairs, separable

LABELS = tuple("abcdef")
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


def attended_labels(m: CorrelationAwareFusion) -> torch.Tensor:
    """The label embeddings after the correlation module, computed by hand: ``(K, d)``."""
    assert m.correlation is not None
    out: torch.Tensor = m.correlation(m.label_proj(m.label_emb)[None])[0]
    return out


def test_label_correlation_attends_once_over_the_labels_and_mixes_them():
    m = CorrelationAwareFusion(FusionConfig(DA, DT, LABELS, d=32, correlation="labels")).eval()
    h = torch.randn(3, 32)
    z = m.label_embeddings(h)
    assert z.shape == (3, len(LABELS), 32)
    # the attention ran over the labels, not per input: the same as conditioning the enhanced
    # label embeddings on h directly
    enhanced = attended_labels(m)
    torch.testing.assert_close(z, m.token_norm(h[:, None] * enhanced + enhanced))
    # and it mixes labels: changing one label's embedding moves the others' tokens
    with torch.no_grad():
        m.label_emb[0] += 1.0
    assert not torch.allclose(m.label_embeddings(h)[:, 1:], z[:, 1:])


def test_once_trained_label_correlation_computes_what_a_no_correlation_model_computes():
    """What the docs say: its attended label embeddings are constants at inference, so a
    no-correlation model holding them gives the same scores (the gain can only come from
    training, never from modelling one input's labels jointly)."""
    a, t, y = separable("text", 90, 4)
    cfg = FusionConfig(DA, DT, LABELS[:4], d=24, heads=3, correlation="labels")
    labels_model, _ = train_model(a, t, y, cfg, TrainConfig(epochs=3, patience=3, seed=2))
    plain = CorrelationAwareFusion(FusionConfig(DA, DT, LABELS[:4], d=24, heads=3, ablation="no-correlation"))
    state = {k: v for k, v in labels_model.state_dict().items() if not k.startswith("correlation.")}
    with torch.no_grad():
        state["label_emb"] = attended_labels(labels_model)
    state["label_proj.weight"] = torch.eye(24)
    state["label_proj.bias"] = torch.zeros(24)
    plain.load_state_dict(state)
    np.testing.assert_allclose(
        predict_arrays(plain, a, t), predict_arrays(labels_model, a, t), rtol=1e-5, atol=1e-6
    )


def test_configs_without_the_field_are_per_input_and_bad_values_are_refused():
    cfg = FusionConfig(DA, DT, LABELS, correlation="labels")
    assert FusionConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["correlation"]
    assert FusionConfig.from_dict(old).correlation == "input"
    with pytest.raises(ConfigError, match="correlation 'bogus'.*input, labels"):
        FusionConfig(DA, DT, LABELS, correlation="bogus")
    with pytest.raises(ConfigError, match="correlation"):
        FusionConfig.from_dict({**cfg.to_dict(), "correlation": "per-label"})


@pytest.mark.parametrize("correlation", ["input", "labels"])
def test_checkpoints_keep_the_correlation_and_older_ones_load_per_input(tmp_path, correlation):
    a, t, y = separable("audio", 70, 9)
    cfg = FusionConfig(DA, DT, LABELS[:4], d=16, heads=2, correlation=correlation)
    model, _ = train_model(a, t, y, cfg, TrainConfig(epochs=2, patience=2))
    save_checkpoint(tmp_path / "m", model, FEATURES, TrainConfig(), {})
    path = tmp_path / "m" / "config.json"
    meta = json.loads(path.read_text())
    assert meta["model"]["correlation"] == correlation
    clf = FusionClassifier.load(tmp_path / "m")
    assert clf.model.cfg == model.cfg
    np.testing.assert_allclose(clf.predict(a, t), predict_arrays(model, a, t), atol=1e-6)
    # a checkpoint written before the field existed: the per-input module, the same scores
    # (both kinds have the same weights, so only the config tells them apart)
    del meta["model"]["correlation"]
    path.write_text(json.dumps(meta))
    old = FusionClassifier.load(tmp_path / "m")
    assert old.model.cfg.correlation == "input"
    if correlation == "input":
        np.testing.assert_allclose(old.predict(a, t), predict_arrays(model, a, t), atol=1e-6)


def test_label_correlation_learns_co_occurring_labels():
    a, t, y = co_occurring_pairs(250, 0)
    ta, tt, ty = co_occurring_pairs(1000, 1)
    cfg = FusionConfig(DA, DT, LABELS, d=64, multi_label=True, correlation="labels")
    model, _ = train_model(a, t, y, cfg, TrainConfig(epochs=60, patience=15))
    m = evaluate_arrays(predict_arrays(model, ta, tt), ty, LABELS, True)
    assert m["macro_f1"] > 0.85 and np.isfinite(m["hamming_loss"])
