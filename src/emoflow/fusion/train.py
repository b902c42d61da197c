"""Training, evaluation and checkpoints of the fusion classifier.

AdamW; class weighting against imbalance (inverse frequency for softmax, ``pos_weight``
for multi-label BCE); early stopping on validation macro-F1; seeded and reproducible on
the CPU. With too little data for a validation split (every class has one example) it
trains on all of it, keeps the epoch with the lowest training loss and says so. A checkpoint
directory holds ``model.pt`` (weights), ``config.json`` (every model setting needed to rebuild
it, label list, the feature models' ids and settings), ``metrics.json`` and the training history.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emoflow.config import TrainConfig
from emoflow.errors import ConfigError, InputError, ModelError, ModelUnavailableError
from emoflow.export.files import atomic_path, write_json_atomic
from emoflow.fusion.feature_record import FeatureInfo
from emoflow.fusion.metrics import multi_label_metrics, plot_confusion, single_label_metrics
from emoflow.fusion.model import CorrelationAwareFusion, FusionConfig
from emoflow.provenance import Provenance
from emoflow.types import EmotionScores

log = logging.getLogger(__name__)
# 2: config.json's "model" has every FusionConfig field (label_dim added); 1 is still read.
# Both record the features as FeatureInfo.to_dict() writes them (older records still read).
CHECKPOINT_VERSION = 2


def label_matrix(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros((len(label_sets), len(labels)), dtype=np.float32)
    for r, ls in enumerate(label_sets):
        for lab in ls:
            if lab not in index:
                raise InputError(f"label {lab!r} is not among the candidates {list(labels)}")
            y[r, index[lab]] = 1
    return y


def _decide(probs: np.ndarray, multi_label: bool, threshold: float) -> np.ndarray:
    if multi_label:
        return (probs >= threshold).astype(int)
    return probs.argmax(1)


def evaluate_arrays(
    probs: np.ndarray, y: np.ndarray, labels: Sequence[str], multi_label: bool, threshold: float = 0.5
) -> dict[str, Any]:
    pred = _decide(probs, multi_label, threshold)
    if multi_label:
        return multi_label_metrics(y.astype(int), pred, labels)
    return single_label_metrics(y.argmax(1).tolist(), pred.tolist(), labels)


def _val_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (by first label) train/val indices."""
    rng = np.random.default_rng(seed)
    cls = y.argmax(1)
    val: list[int] = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        rng.shuffle(idx)
        val += idx[: max(1, int(round(len(idx) * fraction)))].tolist() if len(idx) > 1 else []
    val_arr = np.array(sorted(val), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(y)), val_arr)
    return train, val_arr


def train_model(
    audio: np.ndarray,
    text: np.ndarray,
    y: np.ndarray,
    cfg: FusionConfig,
    train_cfg: TrainConfig | None = None,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    label_init: torch.Tensor | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[CorrelationAwareFusion, dict[str, Any]]:
    """Train on arrays; returns the best model (by validation macro-F1) and the history.

    Without ``val`` a stratified part of the data is held out. When that leaves no validation
    examples (every class has one) or fewer than 2 to train on, it trains on all the data and
    keeps the epoch with the lowest training loss (logged as a warning; the history's
    ``validation`` is then 0 and ``best_val_macro_f1`` None).
    """
    tc = train_cfg or TrainConfig()
    if len(y) < 2:
        raise InputError(f"need at least 2 training examples, got {len(y)}")
    torch.manual_seed(tc.seed)
    g = torch.Generator().manual_seed(tc.seed)
    if val is None:
        tr, va = _val_split(y, tc.val_fraction, tc.seed)
        if len(va) == 0 or len(tr) < 2:
            log.warning(
                "too little data for a validation split (%d examples; a class needs 2 to lend one): "
                "training on all of them and keeping the epoch with the lowest training loss; "
                "add examples or a 'val' split for early stopping on validation macro-F1",
                len(y),
            )
            tr, va = np.arange(len(y)), np.zeros(0, dtype=np.int64)
        val = (audio[va], text[va], y[va])
        audio, text, y = audio[tr], text[tr], y[tr]
    A, T, Y = (torch.as_tensor(a, dtype=torch.float32) for a in (audio, text, y))
    model = CorrelationAwareFusion(cfg, label_init)
    model.set_standardisation(torch.cat([A, T], dim=1))
    if cfg.multi_label:
        pos = Y.sum(0)
        pos_weight = ((len(Y) - pos) / pos.clamp_min(1)).clamp(max=20) if tc.class_weighting else None
        loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    else:
        counts = Y.sum(0)
        w = (counts.sum() / (len(counts) * counts.clamp_min(1))) if tc.class_weighting else None
        if w is not None:
            w[counts == 0] = 0
        loss_fn = nn.CrossEntropyLoss(weight=w)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    # the score to maximise: validation macro-F1, or minus the training loss without validation
    best: tuple[float, int, dict[str, torch.Tensor]] = (-math.inf, -1, {})
    history: list[dict[str, Any]] = []
    va_a, va_t, va_y = val
    for epoch in range(tc.epochs):
        model.train()
        perm = torch.randperm(len(Y), generator=g)
        total = 0.0
        for b in range(0, len(Y), tc.batch_size):
            idx = perm[b : b + tc.batch_size]
            logits = model(A[idx], T[idx])
            target = Y[idx] if cfg.multi_label else Y[idx].argmax(1)
            loss = loss_fn(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        loss_mean = total / len(Y)
        f1: float | None = None
        score = -loss_mean
        if len(va_y):
            probs = predict_arrays(model, va_a, va_t)
            m = evaluate_arrays(probs, va_y, cfg.labels, cfg.multi_label, tc.threshold)
            f1 = score = float(m["macro_f1"])
        history.append({"epoch": epoch, "loss": loss_mean, "val_macro_f1": f1})
        if progress:
            progress(epoch, loss_mean, math.nan if f1 is None else f1)
        if not best[2] or score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= tc.patience:
            break
    if best[2]:  # with epochs == 0 the model stays as built
        model.load_state_dict(best[2])
    model.eval()
    return model, {
        "history": history,
        "best_epoch": best[1],
        "best_val_macro_f1": best[0] if len(va_y) else None,
        "validation": len(va_y),
    }


def predict_arrays(model: CorrelationAwareFusion, audio: np.ndarray, text: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        logits = model(
            torch.as_tensor(audio, dtype=torch.float32), torch.as_tensor(text, dtype=torch.float32)
        )
        return model.probabilities(logits).numpy()


def save_checkpoint(
    directory: str | os.PathLike,
    model: CorrelationAwareFusion,
    features: FeatureInfo,
    train_cfg: TrainConfig,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / "model.pt", suffix=".pt") as tmp:
        torch.save(model.state_dict(), tmp)
    write_json_atomic(
        d / "config.json",
        {
            "checkpoint_version": CHECKPOINT_VERSION,
            "model": model.cfg.to_dict(),
            "features": features.to_dict(),
            "train": asdict(train_cfg),
            **(extra or {}),
        },
    )
    write_json_atomic(d / "metrics.json", metrics)
    return d


class FusionClassifier:
    """A trained checkpoint, ready to predict from (audio, text) embeddings."""

    def __init__(
        self,
        model: CorrelationAwareFusion,
        features: FeatureInfo,
        meta: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.features = features  # what it was trained on
        self.meta = meta
        self.path = path
        self.labels = tuple(model.cfg.labels)
        self.threshold = float(meta.get("train", {}).get("threshold", 0.5))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FusionClassifier:
        d = Path(directory)
        if not (d / "config.json").exists() or not (d / "model.pt").exists():
            raise ModelUnavailableError(
                f"{d}: not a fusion model (needs config.json and model.pt); train one with `emoflow train`"
            )
        retrain = "retrain it with `emoflow train`"
        try:
            meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
            state = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        except (
            UnicodeDecodeError,
            json.JSONDecodeError,
            RuntimeError,
            pickle.UnpicklingError,
            EOFError,
        ) as e:
            raise ModelError(f"{d}: unreadable fusion model ({type(e).__name__}: {e}); {retrain}") from None
        if not isinstance(state, dict):
            raise ModelError(f"{d}: model.pt holds no weights of a fusion model; {retrain}")
        version = meta.get("checkpoint_version") if isinstance(meta, dict) else None
        if not isinstance(version, int) or not isinstance(meta.get("model"), dict):
            raise ModelError(f"{d}: config.json is not a fusion model's; {retrain}")
        if version > CHECKPOINT_VERSION:
            raise ModelError(
                f"{d}: checkpoint version {version} is newer than this emoflow reads "
                f"({CHECKPOINT_VERSION}); upgrade emoflow"
            )
        cfg_d = dict(meta["model"])
        if "label_dim" not in cfg_d and isinstance(state.get("label_emb"), torch.Tensor):
            # version 1 did not record the label embeddings' width: read it from the weights
            cfg_d["label_dim"] = int(state["label_emb"].shape[1])
        try:
            model = CorrelationAwareFusion(FusionConfig.from_dict(cfg_d))
            model.load_state_dict(state)
        except (ConfigError, TypeError, RuntimeError) as e:
            why = " ".join(str(e).split())[:300] or type(e).__name__
            raise ModelError(f"{d}: model.pt does not match config.json ({why}); {retrain}") from None
        try:
            features = FeatureInfo.from_dict(meta.get("features", {}))
        except (InputError, KeyError, TypeError, ValueError) as e:
            why = f"config.json does not say which features it was trained on ({e})"
            raise ModelError(f"{d}: {why}; {retrain}") from None
        return cls(model, features, meta, d)

    def check_features(self, info: FeatureInfo) -> None:
        """Refuse features from other models (or model settings) than the ones it was trained on;
        the same models at other revisions only earn a warning (see :meth:`FeatureInfo.differences`)."""
        for name, trained, used in self.features.differences(info):
            shown = [x.to_dict() if isinstance(x, Provenance) else x for x in (trained, used)]
            raise ConfigError(
                f"fusion model {self.path} was trained with {name} = {shown[0]!r} but the "
                f"analysis uses {shown[1]!r}; use the same models (see its config.json)"
            )
        for model_id, trained, used in self.features.revision_changes(info):
            log.warning(
                "fusion model %s was trained on features of %s at revision %s; the analysis uses %s",
                self.path,
                model_id,
                trained,
                used,
            )

    def predict(self, audio: np.ndarray, text: np.ndarray) -> np.ndarray:
        return predict_arrays(self.model, audio, text)

    def scores(self, audio: np.ndarray, text: np.ndarray) -> list[EmotionScores]:
        return [EmotionScores(self.labels, tuple(float(x) for x in row)) for row in self.predict(audio, text)]

    @property
    def scores_voice(self) -> bool:
        """Whether it scores audio embeddings alone (an ``audio-only`` model): it can then be
        the voice head of an encoder without one (a bare wav2vec2 / WavLM / Whisper encoder)."""
        return self.model.cfg.ablation == "audio-only"

    def voice_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """``(N, K)`` probabilities of an ``audio-only`` model from audio embeddings alone (the
        text input is ignored by that ablation: zeros)."""
        if not self.scores_voice:
            raise ConfigError(
                f"fusion model {self.path} was trained with ablation {self.model.cfg.ablation!r}; "
                "only an audio-only model scores the voice alone"
            )
        audio = np.asarray(audio, np.float32).reshape(-1, self.model.cfg.audio_dim)
        return self.predict(audio, np.zeros((len(audio), self.model.cfg.text_dim), np.float32))

    def evaluate(self, audio: np.ndarray, text: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        return evaluate_arrays(
            self.predict(audio, text), y, self.labels, self.model.cfg.multi_label, self.threshold
        )


def write_evaluation(
    metrics: dict[str, Any], directory: str | os.PathLike, prefix: str = "test"
) -> list[Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = [d / f"{prefix}_metrics.json"]
    write_json_atomic(out[0], metrics)
    if "confusion" in metrics:
        write_json_atomic(d / f"{prefix}_confusion.json", metrics["confusion"])
        with atomic_path(d / f"{prefix}_confusion.png", suffix=".png") as tmp:
            plot_confusion(
                metrics["confusion"],
                tmp,
                title=f"{prefix}: WA {metrics['WA']:.2f}, "
                f"UA {metrics['UA']:.2f}, macro-F1 {metrics['macro_f1']:.2f}",
            )
        out += [d / f"{prefix}_confusion.json", d / f"{prefix}_confusion.png"]
    return out
