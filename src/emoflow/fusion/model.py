"""The correlation-aware fusion classifier (PyTorch).

After Ni & Ni 2024 (ECO-SAM, Front. Psychol. 15:1490796), a text-only multi-label
model with *emotion matching* against a candidate emotion list and an *attention-based
emotion correlation module*. Applying it to fused audio + text embeddings is this
project's own extension.

    x = [audio embedding ; text distributional embedding]    (either may be ablated)
    h = MLP(standardised x)                                  (B, d)
    L_k = W e_k,  e_k learnable, initialised from the text encoder's embedding of label k
    z_k = LayerNorm(h ⊙ L_k + L_k)                           input-conditioned label tokens (B, K, d)
    z   = TransformerEncoderLayer(z)                         multi-head self-attention across the K labels:
                                                             the correlation module -> correlation-enhanced
                                                             label embeddings
          (correlation="labels": the same layer runs once per batch over the K label embeddings,
           L <- TransformerEncoderLayer(L), before they are conditioned on h: one input-independent
           correlation pattern between the labels, at about the no-correlation ablation's cost)
    logit_k = <h, z_k> / sqrt(d) + b_k                       emotion matching
    softmax (single-label) or sigmoid (multi-label)

Ablations: ``audio-only`` / ``text-only`` (one half of x), ``no-correlation`` (matching
without the attention layer), ``mlp`` (concatenation + MLP, no label embeddings at all).

What ``correlation="labels"`` is and is not: once trained, its attended label embeddings are
constants, so it computes exactly what a ``no-correlation`` model with those label embeddings
computes (tests/integration/test_fusion_correlation_labels.py checks it). The attention couples
the labels' embeddings while they are learnt (a shared parametrisation, with dropout); it cannot
make one label's score depend on the evidence for another label in a given input, which only
``"input"`` can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

ABLATIONS = ("full", "audio-only", "text-only", "no-correlation", "mlp")
CORRELATIONS = ("input", "labels")


@dataclass(frozen=True)
class FusionConfig:
    """Everything that determines the model's shape: a checkpoint stores all of it.

    ``label_dim`` is the width of the learnable label embeddings ``e_k``: the sequence
    encoder's width when they start from its embeddings of the label names (768 for
    DistilBERT), else ``d``. None means "decide when the model is built" (from ``label_init``,
    else ``d``); the built model's ``cfg`` always has it set.

    ``correlation`` is what the correlation module attends over: ``"input"``, the K label tokens
    conditioned on each input (B x K tokens through the attention layer per batch, so about
    8·K·d² multiply-adds per example, ~K times the encoder's cost), or ``"labels"``, the K label
    embeddings once per batch (one learned correlation pattern between the labels, independent
    of the input; per-example cost as the no-correlation ablation). It only matters where there
    is a correlation module (``full``, ``audio-only``, ``text-only``); ``no-correlation`` and
    ``mlp`` ignore it. Configs written before this field existed are ``"input"``.
    """

    audio_dim: int
    text_dim: int
    labels: tuple[str, ...]
    d: int = 128
    heads: int = 4
    dropout: float = 0.2
    multi_label: bool = False
    ablation: str = "full"
    label_dim: int | None = None
    correlation: str = "input"

    def __post_init__(self) -> None:
        from emoflow.errors import ConfigError

        if self.ablation not in ABLATIONS:
            raise ConfigError(f"unknown ablation {self.ablation!r}; use {', '.join(ABLATIONS)}")
        if self.correlation not in CORRELATIONS:
            raise ConfigError(f"unknown correlation {self.correlation!r}; use {', '.join(CORRELATIONS)}")
        for name in ("audio_dim", "text_dim", "d", "heads", "label_dim"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.d % self.heads:
            raise ConfigError(f"d ({self.d}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be distinct and not empty, got {list(self.labels)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FusionConfig:
        """The inverse of :meth:`to_dict`; unknown keys are refused (a newer format)."""
        from emoflow.errors import ConfigError

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown fusion model settings {unknown}")
        values = dict(d)
        values["labels"] = tuple(str(x) for x in d.get("labels", ()))
        values.setdefault("correlation", "input")  # the only kind before the field existed
        return cls(**values)


class CorrelationAwareFusion(nn.Module):
    def __init__(self, cfg: FusionConfig, label_init: torch.Tensor | None = None) -> None:
        super().__init__()
        k = len(cfg.labels)
        width = cfg.d
        if cfg.ablation != "mlp":
            # the label embeddings' width is part of the config, so a checkpoint rebuilds the
            # same shapes whatever the label init was (it is the encoder's width, not d)
            width = cfg.label_dim or (int(label_init.shape[1]) if label_init is not None else cfg.d)
            if label_init is not None and tuple(label_init.shape) != (k, width):
                from emoflow.errors import ConfigError

                raise ConfigError(
                    f"label_init has shape {tuple(label_init.shape)}, expected ({k}, {width}): "
                    "one embedding per label, label_dim wide"
                )
            cfg = replace(cfg, label_dim=width)
        self.cfg = cfg
        self.use_audio = cfg.ablation != "text-only"
        self.use_text = cfg.ablation != "audio-only"
        in_dim = (cfg.audio_dim if self.use_audio else 0) + (cfg.text_dim if self.use_text else 0)
        # feature standardisation, set from the training data (emotion2vec and BERT scales differ)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(cfg.audio_dim + cfg.text_dim))
        self.register_buffer("std", torch.ones(cfg.audio_dim + cfg.text_dim))
        self.encoder = nn.Sequential(
            nn.Dropout(cfg.dropout / 2),
            nn.Linear(in_dim, cfg.d),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.d, cfg.d),
        )
        if cfg.ablation == "mlp":
            self.head = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.d, k))
            return
        init = label_init if label_init is not None else torch.randn(k, width) * 0.5
        self.label_emb = nn.Parameter(init.clone().float())
        self.label_proj = nn.Linear(width, cfg.d)
        self.token_norm = nn.LayerNorm(cfg.d)
        self.correlation = (
            None
            if cfg.ablation == "no-correlation"
            else nn.TransformerEncoderLayer(
                cfg.d,
                cfg.heads,
                dim_feedforward=2 * cfg.d,
                dropout=cfg.dropout,
                batch_first=True,
                norm_first=True,
            )
        )
        self.bias = nn.Parameter(torch.zeros(k))

    def set_standardisation(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-4))

    def _inputs(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([audio, text], dim=1) - self.mean) / self.std
        da = self.cfg.audio_dim
        parts = ([x[:, :da]] if self.use_audio else []) + ([x[:, da:]] if self.use_text else [])
        return torch.cat(parts, dim=1)

    def label_embeddings(self, h: torch.Tensor) -> torch.Tensor:
        """Correlation-enhanced label embeddings ``(B, K, d)`` for input representations ``h``."""
        labels = self.label_proj(self.label_emb)  # (K, d)
        attend = self.correlation
        if attend is not None and self.cfg.correlation == "labels":
            labels = attend(labels[None])[0]  # once per batch, whatever B: (K, d)
            attend = None
        z = self.token_norm(h[:, None, :] * labels[None] + labels[None])
        return attend(z) if attend is not None else z  # "input": B x K tokens through the layer

    def forward(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``."""
        h = self.encoder(self._inputs(audio, text))
        if self.cfg.ablation == "mlp":
            out: torch.Tensor = self.head(h)
            return out
        z = self.label_embeddings(h)
        return (z * h[:, None, :]).sum(-1) / math.sqrt(self.cfg.d) + self.bias

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.cfg.multi_label else torch.softmax(logits, dim=-1)
