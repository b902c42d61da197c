"""Text emotion per sentence with a transformers sequence classifier.

Default ``j-hartmann/emotion-english-distilroberta-base`` (7 labels: anger, disgust, fear,
joy, neutral, sadness, surprise). Labels are read from the model's config; all scores
are returned (softmax, or sigmoid for a multi-label model); inputs are batched by length
and truncated at the model's limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from emoflow.config import DEFAULT_TEXT_MODEL
from emoflow.models import (
    MODEL_CACHE,
    ModelSpec,
    resolve_device,
    resolve_dtype,
    resolve_model_dir,
)
from emoflow.types import EmotionScores

log = logging.getLogger(__name__)


class TextEmotionClassifier:
    """Stage: sentences → 7 emotion scores each. Loads once, in the constructor.

    ``model``/``tokenizer`` may be passed already built (tests, notebooks).
    """

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_TEXT_MODEL,
        *,
        batch_size: int = 32,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.batch_size = batch_size
        self.device = resolve_device(self.spec.device)
        # scores are probabilities compared at 1e-3: bf16 is safe and 3x faster on CPUs that have it
        self.dtype = resolve_dtype(self.spec.dtype, self.device, cpu_bf16=True)
        if model is None or tokenizer is None:
            key = ("text-emotion", self.spec.id, self.spec.revision, self.device, str(self.dtype))
            model, tokenizer = MODEL_CACHE.get(key, self._load)
        self.model, self.tokenizer = model, tokenizer
        cfg = model.config
        self.labels = tuple(str(cfg.id2label[i]) for i in range(cfg.num_labels))
        self.multi_label = cfg.problem_type == "multi_label_classification"
        limits = [getattr(tokenizer, "model_max_length", 512) or 512]
        if getattr(cfg, "max_position_embeddings", None):
            # RoBERTa reserves two positions (padding offset)
            limits.append(
                cfg.max_position_embeddings - (2 if cfg.model_type in ("roberta", "xlm-roberta") else 0)
            )
        self.max_length = int(min(limits))

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model_dir(self.spec, ["config.json"], what="text emotion model", flag="--text-model")
        tok = AutoTokenizer.from_pretrained(path)
        model = (
            AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        )
        return model, tok

    def preprocess(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def forward(self, batch: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float().cpu()

    def postprocess(self, logits: Any) -> np.ndarray:
        import torch

        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.numpy()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``(N, L)`` in the model's label order."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            out[idx] = self.postprocess(self.forward(self.preprocess([texts[i] or " " for i in idx])))
        return out

    def __call__(self, texts: Sequence[str]) -> list[EmotionScores]:
        return [EmotionScores(self.labels, tuple(float(x) for x in row)) for row in self.scores(texts)]
