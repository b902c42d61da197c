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
    folds: int | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    fold_progress: Callable[[int, int, float, float], None] | None = None,
    **model_options: Any,
) -> dict[str, Any]:
    """Train on the manifest's ``train`` rows (early stopping on ``val``), evaluate on ``test``.

    With ``folds`` = K: K speaker-independent folds over every row outside the ``test`` split
    (:mod:`emoflow.fusion.folds`; metrics in ``OUT/cv_metrics.json`` and ``metrics.json``'s
    ``cv``), then the model saved is trained on all those rows the way each fold was (early
    stopping on a stratified part of them); ``test`` rows, if any, still evaluate it.
    ``model_options``: further :class:`FusionConfig` fields."""
    from emoflow.fusion.folds import cross_validate, speaker_folds

    rows = read_manifest(manifest)
    if labels is None:
        used = {lab for r in rows for lab in r.labels}
        labels = [c for c in CANDIDATES if c in used] + sorted(used - set(CANDIDATES))
    check_labels(rows, labels)
    if folds is not None:  # a usage error (exit 2) before any feature is read
        speaker_folds([r for r in rows if (r.split or "train") != "test"], folds)
    fs = load_cached(rows, cache)
    for row, why in fs.failures:
        log.warning("%s: %s", row.id, why)
    if multi_label is None:
        multi_label = any(len(r.labels) > 1 for r in fs.rows)
    te = fs.subset("test")
    if folds is None:
        tr, va = fs.subset("train"), fs.subset("val")
    else:
        idx = [i for i, r in enumerate(fs.rows) if (r.split or "train") != "test"]
        tr = FeatureSet([fs.rows[i] for i in idx], fs.audio[idx], fs.text[idx], [], fs.info)
        va = FeatureSet([], fs.audio[:0], fs.text[:0], [], fs.info)
    if len(tr) < 2:
        where = "outside the 'test' split" if folds is not None else "(split 'train' or empty)"
        raise InputError(f"{manifest}: fewer than 2 training rows with features {where}")
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
        **model_options,
    )
    init = load_label_embeddings(cache, labels)
    init_t = None if init is None else torch.as_tensor(init)
    cv = None
    if folds is not None:
        cv = cross_validate(
            tr.rows, *_arrays(tr, labels), cfg, folds, tc, label_init=init_t, progress=fold_progress
        )
    model, history = train_model(
        *_arrays(tr, labels),
        cfg,
        tc,
        val=_arrays(va, labels) if len(va) else None,
        label_init=init_t,
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
    if cv is not None:
        metrics["cv"] = {k: cv[k] for k in ("folds", "by", "n", "speakers", "mean", "sd")}
        write_cv(cv, out)
    if len(te):
        a, t, y = _arrays(te, labels)
        metrics["test"] = evaluate_arrays(predict_arrays(model, a, t), y, labels, multi_label, tc.threshold)
        write_evaluation(metrics["test"], out, "test")
    extra = {"history": history["history"], "label_init": init is not None}
    save_checkpoint(out, model, fs.info, tc, metrics, extra=extra)
    if cv is not None:
        metrics["cv"] = cv
    return metrics


def write_cv(cv: dict[str, Any], directory: Path) -> list[Path]:
    """``cv_metrics.json`` (every fold, mean and sd, pooled out-of-fold metrics) and, for a
    single-label task, ``cv_confusion.png`` of the pooled out-of-fold predictions."""
    from emoflow.export.files import atomic_path, write_json_atomic
    from emoflow.fusion.metrics import plot_confusion

    directory.mkdir(parents=True, exist_ok=True)
    out = [directory / "cv_metrics.json"]
    write_json_atomic(out[0], cv)
    pooled = cv["pooled"]
    if "confusion" in pooled:
        mean, sd = cv["mean"], cv["sd"]
        with atomic_path(directory / "cv_confusion.png", suffix=".png") as tmp:
            plot_confusion(
                pooled["confusion"],
                tmp,
                title=f"{cv['folds']} speaker folds: UA {mean['UA']:.2f} ± {sd['UA']:.2f}, "
                f"WA {mean['WA']:.2f} ± {sd['WA']:.2f}",
            )
        out.append(directory / "cv_confusion.png")
    return out


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
