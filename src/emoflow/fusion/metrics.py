"""Classification metrics as the speech emotion literature reports them.

WA (weighted accuracy) = plain accuracy; UA (unweighted accuracy) = mean per-class
recall (balanced accuracy); macro- and weighted-F1; per-class report; confusion matrix.
Multi-label: micro/macro-F1 and Hamming loss. Computed with scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def single_label_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    idx = list(range(len(labels)))
    t, p = np.asarray(y_true), np.asarray(y_pred)
    present = sorted(set(t.tolist()))  # UA averages recall over the classes that occur
    recalls = [float(np.mean(p[t == k] == k)) for k in present]
    report = classification_report(
        t, p, labels=idx, target_names=list(labels), output_dict=True, zero_division=0
    )
    return {
        "n": int(len(t)),
        "WA": float(accuracy_score(t, p)) if len(t) else 0.0,
        "UA": float(np.mean(recalls)) if recalls else 0.0,
        "UA_sklearn": float(balanced_accuracy_score(t, p)) if len(t) else 0.0,
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0))
        if len(t)
        else 0.0,
        "weighted_f1": float(f1_score(t, p, labels=idx, average="weighted", zero_division=0))
        if len(t)
        else 0.0,
        "per_class": {k: v for k, v in report.items() if k in labels},
        "confusion": {"labels": list(labels), "matrix": confusion_matrix(t, p, labels=idx).tolist()},
    }


def multi_label_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import classification_report, f1_score, hamming_loss

    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    report = classification_report(t, p, target_names=list(labels), output_dict=True, zero_division=0)
    return {
        "n": int(len(t)),
        "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "hamming_loss": float(hamming_loss(t, p)),
        "subset_accuracy": float(np.mean((t == p).all(axis=1))) if len(t) else 0.0,
        "per_class": {k: v for k, v in report.items() if k in labels},
    }


def plot_confusion(confusion: dict[str, Any], path: str | Path, title: str = "Confusion matrix") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels, m = confusion["labels"], np.asarray(confusion["matrix"], dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.65 * len(labels)), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(m[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + " (colour: row-normalised recall)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
