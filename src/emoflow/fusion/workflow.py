"""The fusion workflows behind the CLI: features → train → evaluate → predict."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoflow.config import PipelineConfig
from emoflow.errors import InputError
from emoflow.fusion.datasets import CANDIDATES, ManifestRow, check_labels, read_manifest
from emoflow.fusion.features import (
    FeatureExtractor,
    FeatureInfo,
    FeatureSet,
    load_cached,
    load_label_embeddings,
)
from emoflow.fusion.model import FusionConfig
from emoflow.fusion.train import (
    FusionClassifier,
    TrainConfig,
    evaluate_arrays,
    label_matrix,
    predict_arrays,
    save_checkpoint,
    train_model,
    write_evaluation,
)

log = logging.getLogger(__name__)


def pipeline_config_from_features(info: FeatureInfo, base: PipelineConfig | None = None) -> PipelineConfig:
    """The analysis settings that produce the same features a fusion model was trained on
    (its feature record's models and settings; ``base``'s for everything else)."""
    return info.config(base)


def extract_features(
    manifest: str | os.PathLike,
    cache: str | os.PathLike,
    config: PipelineConfig,
    progress: Callable[[int, int, str], None] | None = None,
) -> FeatureSet:
    from emoflow.pipeline import Pipeline

    rows = read_manifest(manifest)
    return FeatureExtractor(Pipeline(config)).extract(rows, cache, progress)


def _arrays(fs: FeatureSet, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return fs.audio, fs.text, label_matrix([r.labels for r in fs.rows], labels)


def train_from_manifest(
    manifest: str | os.PathLike,
    cache: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    ablation: str = "full",
    multi_label: bool | None = None,
    d: int = 128,
    heads: int = 4,
    dropout: float = 0.2,
    train_cfg: TrainConfig | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Train on the manifest's ``train`` rows (early stopping on ``val``), evaluate on ``test``."""
    rows = read_manifest(manifest)
    if labels is None:
        used = {lab for r in rows for lab in r.labels}
        labels = [c for c in CANDIDATES if c in used] + sorted(used - set(CANDIDATES))
    check_labels(rows, labels)
    fs = load_cached(rows, cache)
    for row, why in fs.failures:
        log.warning("%s: %s", row.id, why)
    if multi_label is None:
        multi_label = any(len(r.labels) > 1 for r in fs.rows)
    tr, va, te = fs.subset("train"), fs.subset("val"), fs.subset("test")
    if len(tr) < 2:
        raise InputError(f"{manifest}: fewer than 2 training rows with features (split 'train' or empty)")
    tc = train_cfg or TrainConfig()
    audio_dim, text_dim = fs.info.widths
    cfg = FusionConfig(
        audio_dim=audio_dim,
        text_dim=text_dim,
        labels=tuple(labels),
        d=d,
        heads=heads,
        dropout=dropout,
        multi_label=multi_label,
        ablation=ablation,
    )
    init = load_label_embeddings(cache, labels)
    model, history = train_model(
        *_arrays(tr, labels),
        cfg,
        tc,
        val=_arrays(va, labels) if len(va) else None,
        label_init=None if init is None else torch.as_tensor(init),
        progress=progress,
    )
    metrics: dict[str, Any] = {
        "train": {"n": len(tr)},
        "validation": {"n": history["validation"]},  # 0: too little data, trained on all rows
        "best_epoch": history["best_epoch"],
        "best_val_macro_f1": history["best_val_macro_f1"],
        "skipped_rows": [{"row": r.id, "reason": why} for r, why in fs.failures],
    }
    out = Path(out)
    if len(te):
        a, t, y = _arrays(te, labels)
        metrics["test"] = evaluate_arrays(predict_arrays(model, a, t), y, labels, multi_label, tc.threshold)
        write_evaluation(metrics["test"], out, "test")
    extra = {"history": history["history"], "label_init": init is not None}
    save_checkpoint(out, model, fs.info, tc, metrics, extra=extra)
    return metrics


def evaluate_model(
    model_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    cache: str | os.PathLike | None = None,
    split: str | None = "test",
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Metrics of a trained model on the manifest's ``split`` rows (all rows when ``split`` is None);
    features come from ``cache`` or are extracted with the model's own feature models."""
    clf = FusionClassifier.load(model_dir)
    rows = [r for r in read_manifest(manifest) if split is None or (r.split or "train") == split]
    if not rows:
        raise InputError(f"{manifest}: no rows in split {split!r}; use --split all")
    check_labels(rows, clf.labels)
    if cache is not None:
        fs = load_cached(rows, cache)
        clf.check_features(fs.info)
    else:
        import tempfile

        from emoflow.pipeline import Pipeline

        with tempfile.TemporaryDirectory() as tmp:
            fs = FeatureExtractor(Pipeline(pipeline_config_from_features(clf.features))).extract(
                rows, tmp, progress
            )
    if not len(fs):
        raise InputError("no rows with features to evaluate")
    metrics = clf.evaluate(fs.audio, fs.text, label_matrix([r.labels for r in fs.rows], clf.labels))
    metrics["skipped_rows"] = [{"row": r.id, "reason": why} for r, why in fs.failures]
    write_evaluation(metrics, out or model_dir, split or "all")
    return metrics


def predict_files(
    model_dir: str | os.PathLike, files: Sequence[str | os.PathLike], base: PipelineConfig | None = None
) -> list[dict[str, Any]]:
    """Utterance-level predictions (each file is one example, as in training on dataset clips)."""
    import tempfile

    from emoflow.pipeline import Pipeline

    clf = FusionClassifier.load(model_dir)
    rows = [ManifestRow(str(f), ()) for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        fs = FeatureExtractor(Pipeline(pipeline_config_from_features(clf.features, base))).extract(rows, tmp)
    out = []
    for row, scores in zip(fs.rows, clf.scores(fs.audio, fs.text), strict=True):
        out.append({"audio": row.audio, "label": scores.top, **scores.to_dict()})
    out += [{"audio": r.audio, "error": why} for r, why in fs.failures]
    return out
