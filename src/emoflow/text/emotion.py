"""Text emotion per sentence with a transformers sequence classifier.

Default ``j-hartmann/emotion-english-distilroberta-base`` (7 labels: anger, disgust, fear,
joy, neutral, sadness, surprise). Labels are read from the model's config; all scores
are returned (softmax, or sigmoid for a multi-label model); inputs are batched by length
and truncated at the model's limit. ``dtype=auto`` runs in bfloat16 on CPUs with native bf16
(scores are probabilities compared at 1e-3: bf16 is safe there and about 3x faster).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.config import DEFAULT_TEXT_MODEL
from emoflow.models import ModelSpec
from emoflow.stage import ModelStage
from emoflow.types import EmotionScores

log = logging.getLogger(__name__)


class TextEmotionClassifier(ModelStage[tuple[Any, Any]]):
    """Stage: sentences → 7 emotion scores each. Loads once, in the constructor.

    ``model``/``tokenizer`` may be passed already built (tests, notebooks).
    """

    kind = "text-emotion"
    what = "text emotion model"
    flag = "--text-model"
    required_files = ("config.json",)
    cpu_bf16 = True

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_TEXT_MODEL,
        *,
        batch_size: int = 32,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.batch_size = batch_size
        given = (model, tokenizer) if model is not None and tokenizer is not None else None
        super().__init__(spec, loaded=given)
        cfg = self.model.config
        self.labels = tuple(str(cfg.id2label[i]) for i in range(cfg.num_labels))
        self.multi_label = cfg.problem_type == "multi_label_classification"
        limits = [getattr(self.tokenizer, "model_max_length", 512) or 512]
        if getattr(cfg, "max_position_embeddings", None):
            # RoBERTa reserves two positions (padding offset)
            limits.append(
                cfg.max_position_embeddings - (2 if cfg.model_type in ("roberta", "xlm-roberta") else 0)
            )
        self.max_length = int(min(limits))

    def load(self, path: Path) -> tuple[Any, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        model = (
            AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        )
        return model, tok

    @property
    def model(self) -> Any:
        return self.loaded[0]

    @property
    def tokenizer(self) -> Any:
        return self.loaded[1]

    def preprocess(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def _forward(self, batch: Any) -> Any:
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
            out[idx] = self.run([texts[i] or " " for i in idx])
        return out

    def __call__(self, texts: Sequence[str]) -> list[EmotionScores]:
        return [EmotionScores(self.labels, tuple(float(x) for x in row)) for row in self.scores(texts)]
