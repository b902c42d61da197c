"""Speaker-independent cross-validation of the fusion classifier (``emoflow train --folds K``).

The rows are grouped by their manifest ``speaker``; each speaker's rows all go to one fold
(never a voice in both training and test data). Speakers are dealt to folds as scikit-learn's
``GroupKFold`` does, so folds hold about as many rows each: the speakers with the most rows
first, each to the fold with the fewest rows so far (ties broken by a stable hash of the
speaker, so the folds do not depend on the manifest's row order). Fold k trains on the other
folds exactly as ``emoflow train`` trains (early stopping on a stratified part of its own
training rows) and is tested on its speakers. The figures: each fold's metrics, their mean and
standard deviation over folds (population sd, ``ddof=0``), and the metrics of all out-of-fold
predictions pooled (with their confusion matrix).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from emoflow.config import TrainConfig
from emoflow.errors import ConfigError
from emoflow.fusion.manifest import ManifestRow
from emoflow.fusion.model import FusionConfig
from emoflow.fusion.train import evaluate_arrays, predict_arrays, train_model

# the metrics summarised over folds, as far as the task has them
SUMMARY_KEYS = ("UA", "WA", "macro_f1", "weighted_f1", "micro_f1", "hamming_loss", "subset_accuracy")


def _hash(speaker: str) -> str:
    return hashlib.sha256(speaker.encode()).hexdigest()


def speaker_folds(rows: Sequence[ManifestRow], k: int) -> list[tuple[str, ...]]:
    """The test speakers of each of ``k`` folds (each speaker in exactly one fold).

    :class:`ConfigError` (a usage error) when ``k`` < 2, when rows have no speaker (a fold
    could not be speaker-independent) or when there are fewer speakers than folds."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k!r}")
    missing = sum(1 for r in rows if not r.speaker)
    if missing:
        raise ConfigError(
            f"--folds {k}: {missing} of {len(rows)} rows have no speaker; speaker-independent folds "
            "need the manifest's speaker column on every row"
        )
    counts = Counter(r.speaker for r in rows if r.speaker)
    if k > len(counts):
        names = ", ".join(sorted(counts)[:10]) + (", ..." if len(counts) > 10 else "")
        raise ConfigError(
            f"--folds {k} is more than the {len(counts)} speakers of the manifest ({names}); "
            f"use --folds {len(counts)} or fewer"
        )
    sizes = [0] * k
    members: list[list[str]] = [[] for _ in range(k)]
    for speaker in sorted(counts, key=lambda s: (-counts[s], _hash(s))):
        fold = min(range(k), key=lambda f: (sizes[f], f))
        sizes[fold] += counts[speaker]
        members[fold].append(speaker)
    return [tuple(sorted(m)) for m in members]


def _summary(per_fold: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = [k for k in SUMMARY_KEYS if all(k in f for f in per_fold)]
    values = {k: np.array([float(f[k]) for f in per_fold]) for k in keys}
    return (
        {k: float(v.mean()) for k, v in values.items()},
        {k: float(v.std()) for k, v in values.items()},
    )


def cross_validate(
    rows: Sequence[ManifestRow],
    audio: np.ndarray,
    text: np.ndarray,
    y: np.ndarray,
    cfg: FusionConfig,
    k: int,
    train_cfg: TrainConfig | None = None,
    label_init: torch.Tensor | None = None,
    progress: Callable[[int, int, float, float], None] | None = None,
) -> dict[str, Any]:
    """``k`` speaker-independent folds over the rows (aligned with ``audio``, ``text`` and the
    label matrix ``y``): per fold metrics, mean and sd over folds, pooled out-of-fold metrics.
    ``progress(fold, epoch, loss, val_f1)`` reports training."""
    tc = train_cfg or TrainConfig()
    splits = speaker_folds(rows, k)
    speakers = np.array([r.speaker for r in rows], dtype=object)
    per_fold: list[dict[str, Any]] = []
    oof = np.zeros((len(rows), len(cfg.labels)), np.float32)
    for i, test_speakers in enumerate(splits):
        te = np.isin(speakers, test_speakers)
        tr = ~te
        report = None if progress is None else (lambda e, loss, f1, i=i: progress(i, e, loss, f1))
        model, history = train_model(
            audio[tr], text[tr], y[tr], cfg, tc, label_init=label_init, progress=report
        )
        probs = predict_arrays(model, audio[te], text[te])
        oof[te] = probs
        m = evaluate_arrays(probs, y[te], cfg.labels, cfg.multi_label, tc.threshold)
        per_fold.append(
            {
                "fold": i + 1,
                "test_speakers": list(test_speakers),
                "n_train": int(tr.sum()),
                "n_test": int(te.sum()),
                "best_epoch": history["best_epoch"],
                **{key: m[key] for key in SUMMARY_KEYS if key in m},
                "per_class": m.get("per_class", {}),
            }
        )
    mean, sd = _summary(per_fold)
    return {
        "folds": k,
        "by": "speaker",
        "n": len(rows),
        "speakers": len({str(s) for s in speakers}),
        "per_fold": per_fold,
        "mean": mean,
        "sd": sd,
        "sd_note": "population standard deviation over folds (ddof=0)",
        "pooled": evaluate_arrays(oof, y, cfg.labels, cfg.multi_label, tc.threshold),
        "seed": tc.seed,
    }


def format_summary(cv: dict[str, Any]) -> list[str]:
    """Lines for the terminal: one per fold, then mean ± sd over folds."""
    names = {"UA": "UA", "WA": "WA", "macro_f1": "macro-F1", "micro_f1": "micro-F1"}
    keys = [k for k in names if k in cv["mean"]]
    lines = []
    for f in cv["per_fold"]:
        speakers = ", ".join(f["test_speakers"])
        if len(speakers) > 60:
            speakers = speakers[:57] + "..."
        figures = ", ".join(f"{names[k]} {f[k]:.3f}" for k in keys)
        lines.append(f"fold {f['fold']}/{cv['folds']} (test {f['n_test']} rows: {speakers}): {figures}")
    summary = ", ".join(f"{names[k]} {cv['mean'][k]:.3f} ± {cv['sd'][k]:.3f}" for k in keys)
    lines.append(f"{cv['folds']} speaker folds ({cv['speakers']} speakers, {cv['n']} rows): {summary}")
    return lines
