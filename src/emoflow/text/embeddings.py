"""Distributional emotion embeddings of emotion sequences (after Liapis, Karanikola &
Kotsiantis 2025, Neurocomputing 634:129822).

Two ways, as in the paper:

* **extraction** (:class:`SequenceEncoder`): a pretrained encoder (default
  ``distilbert-base-uncased``) reads the sequence string (``"joy__surprise__neutral"``);
  the embedding is the ``[CLS]`` vector of the last layer (``cls``), or a weighted
  average of the ``[CLS]`` vectors of chosen layers (``layers``; default the mean of the
  last four). Self-attention makes each emotion's vector depend on the others in the
  sequence.
* **generation** (:class:`EmotionWord2Vec`): an embedding scheme trained from scratch
  (gensim Word2Vec, skip-gram) over the serially ordered emotion tokens of a base
  corpus: each document's sentences' sequences, in document order, form one token
  stream, so tokens that follow each other in the flow of a text end up close. A
  sequence's embedding is the position-weighted mean of its token vectors (the most
  probable emotion weighs most).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emoflow.config import DEFAULT_ENCODER, DEFAULT_SEPARATOR
from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.models import (
    MODEL_CACHE,
    ModelSpec,
    resolve_device,
    resolve_dtype,
    resolve_model_dir,
)
from emoflow.text.sequences import sequence_tokens

log = logging.getLogger(__name__)

Pooling = Literal["cls", "layers"]


class SequenceEncoder:
    """Extraction: embeddings of emotion-sequence strings from a pretrained encoder.

    ``layers``: hidden-state indices to average for ``pooling="layers"`` (0 is the
    embedding layer, -1 the last); ``weights``: one per layer (normalised), equal by default.
    """

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_ENCODER,
        *,
        pooling: Pooling = "cls",
        layers: Sequence[int] = (-4, -3, -2, -1),
        weights: Sequence[float] | None = None,
        batch_size: int = 64,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if pooling not in ("cls", "layers"):
            raise ConfigError(f"unknown pooling {pooling!r}; use cls or layers")
        if weights is not None and len(weights) != len(layers):
            raise ConfigError(f"{len(weights)} layer weights for {len(layers)} layers")
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.pooling = pooling
        self.layers = tuple(layers)
        w = np.asarray(weights if weights is not None else [1.0] * len(layers), dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ConfigError("layer weights must be non-negative and not all zero")
        self.weights = w / w.sum()
        self.batch_size = batch_size
        self.device = resolve_device(self.spec.device)
        self.dtype = resolve_dtype(self.spec.dtype, self.device)
        if model is None or tokenizer is None:
            key = ("encoder", self.spec.id, self.spec.revision, self.device, str(self.dtype))
            model, tokenizer = MODEL_CACHE.get(key, self._load)
        self.model, self.tokenizer = model, tokenizer
        self.dim = int(getattr(model.config, "hidden_size", None) or model.config.dim)
        n_hidden = int(getattr(model.config, "num_hidden_layers", None) or model.config.n_layers) + 1
        for i in self.layers:
            if not -n_hidden <= i < n_hidden:
                raise ConfigError(
                    f"layer {i} does not exist: the encoder has hidden states 0..{n_hidden - 1}"
                )

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_dir(self.spec, ["config.json"], what="sequence encoder", flag="--encoder-model")
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        return model, tok

    def describe(self) -> dict[str, Any]:
        """Settings and provenance (the encoder's resolved revision), as results record them."""
        return {**extraction_settings(self.pooling, self.layers, self.weights), **self.spec.provenance()}

    def __call__(self, sequences: Sequence[str]) -> np.ndarray:
        """Embeddings ``(N, D)`` float32. Each distinct sequence is encoded once (a transcript
        has many sentences but few distinct top-k sequences: at most 210 for 7 labels, k=3)."""
        unique = list(dict.fromkeys(sequences))
        emb = self._encode(unique)
        index = {s: i for i, s in enumerate(unique)}
        return emb[[index[s] for s in sequences]]

    def _encode(self, sequences: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        for b in range(0, len(sequences), self.batch_size):
            batch = self.tokenizer(
                list(sequences[b : b + self.batch_size]), padding=True, truncation=True, return_tensors="pt"
            )
            with torch.inference_mode():
                res = self.model(
                    **{k: v.to(self.device) for k, v in batch.items()},
                    output_hidden_states=self.pooling == "layers",
                )
                if self.pooling == "cls":
                    emb = res.last_hidden_state[:, 0, :]
                else:
                    stack = torch.stack([res.hidden_states[i][:, 0, :] for i in self.layers])  # (L, B, D)
                    w = torch.as_tensor(self.weights, dtype=stack.dtype, device=stack.device)
                    emb = (stack * w[:, None, None]).sum(0)
            out[b : b + len(batch["input_ids"])] = emb.float().cpu().numpy()
        return out


def extraction_settings(
    pooling: str, layers: Sequence[int], weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """What determines an extraction embedding besides the encoder's weights (layer weights
    normalised, as :class:`SequenceEncoder` uses them)."""
    d: dict[str, Any] = {"method": "extraction", "pooling": pooling}
    if pooling == "layers":
        w = np.asarray(weights if weights is not None else [1.0] * len(layers), dtype=np.float64)
        d.update(layers=list(layers), weights=[float(x) for x in (w / w.sum() if w.sum() > 0 else w)])
    return d


def describe_embedding(
    method: str,
    *,
    spec: ModelSpec,
    layers: Sequence[int] = (-4, -3, -2, -1),
    weights: Sequence[float] | None = None,
    scheme: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The sequence embedding's settings and provenance without loading it: ``method`` ``cls`` or
    ``layers`` (the encoder ``spec``), or ``word2vec`` (the trained ``scheme`` directory)."""
    if method == "word2vec":
        return EmotionWord2Vec.describe_scheme(scheme or "")
    return {**extraction_settings(method, layers, weights), **spec.provenance()}


def _stable_hash(s: str) -> int:
    """gensim seeds each word's initial vector with ``hash``; Python's is salted per process."""
    return zlib.crc32(s.encode("utf-8"))


class EmotionWord2Vec:
    """Generation: a skip-gram Word2Vec trained over emotion tokens in document order."""

    SCHEME_FILE = "scheme.json"
    VECTORS_FILE = "vectors.kv"

    def __init__(self, vectors: Any, meta: dict[str, Any]) -> None:
        self.vectors = vectors  # gensim KeyedVectors
        self.meta = meta
        self.separator = meta.get("separator", DEFAULT_SEPARATOR)
        self.dim = int(vectors.vector_size)

    @classmethod
    def train(
        cls,
        documents: Iterable[Sequence[str]],
        *,
        vector_size: int = 32,
        window: int = 5,
        epochs: int = 50,
        min_count: int = 1,
        seed: int = 0,
        separator: str = DEFAULT_SEPARATOR,
    ) -> EmotionWord2Vec:
        """Train on token streams (one per document: its sentences' emotion tokens, in order).

        Single-threaded with a stable hash, so the same corpus and seed give the same vectors.
        """
        from gensim.models import Word2Vec

        docs = [list(d) for d in documents if len(d)]
        if not docs:
            raise ConfigError("the base corpus has no emotion tokens to train on")
        model = Word2Vec(
            sentences=docs,
            vector_size=vector_size,
            window=window,
            sg=1,
            min_count=min_count,
            epochs=epochs,
            seed=seed,
            workers=1,
            hashfxn=_stable_hash,
        )
        meta = {
            "method": "generation",
            "algorithm": "word2vec-skipgram",
            "vector_size": vector_size,
            "window": window,
            "epochs": epochs,
            "min_count": min_count,
            "seed": seed,
            "separator": separator,
            "weighting": "position (k, k-1, ..., 1)",
            "documents": len(docs),
            "tokens": int(sum(len(d) for d in docs)),
            "vocabulary": sorted(model.wv.key_to_index),
        }
        return cls(model.wv, meta)

    def save(self, directory: str | os.PathLike) -> Path:
        from emoflow.export.files import atomic_path, write_json_atomic

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / self.VECTORS_FILE) as tmp:
            self.vectors.save(str(tmp))
        write_json_atomic(d / self.SCHEME_FILE, self.meta)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EmotionWord2Vec:
        from gensim.models import KeyedVectors

        d = Path(directory)
        if not (d / cls.SCHEME_FILE).exists() or not (d / cls.VECTORS_FILE).exists():
            raise ModelUnavailableError(
                f"{d}: not an emotion embedding scheme (needs {cls.SCHEME_FILE} and "
                f"{cls.VECTORS_FILE}); train one with `emoflow train-embeddings`"
            )
        meta = json.loads((d / cls.SCHEME_FILE).read_text(encoding="utf-8"))
        key = ("word2vec", str(d.resolve()), (d / cls.VECTORS_FILE).stat().st_mtime_ns)
        vectors = MODEL_CACHE.get(key, lambda: KeyedVectors.load(str(d / cls.VECTORS_FILE)))
        meta["path"] = str(d)
        return cls(vectors, meta)

    def describe(self) -> dict[str, Any]:
        """The scheme's settings; once saved or loaded, its folder and content hash too."""
        d = {k: v for k, v in self.meta.items() if k != "vocabulary"}
        if d.get("path"):
            d.update(ModelSpec(str(d["path"])).provenance())
        return d

    @classmethod
    def describe_scheme(cls, directory: str | os.PathLike[str]) -> dict[str, Any]:
        """:meth:`describe` of a saved scheme without loading its vectors."""
        d = Path(directory)
        try:
            meta = json.loads((d / cls.SCHEME_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                f"{d}: not an emotion embedding scheme ({cls.SCHEME_FILE} unreadable: "
                f"{type(e).__name__}); train one with `emoflow train-embeddings`"
            ) from None
        out = {k: v for k, v in meta.items() if k != "vocabulary"}
        out["path"] = str(d)
        out.update(ModelSpec(str(d)).provenance())
        return out

    def embed_tokens(self, tokens: Sequence[str]) -> np.ndarray:
        known = [t for t in tokens if t in self.vectors.key_to_index]
        if not known:
            return np.zeros(self.dim, dtype=np.float32)
        w = np.arange(len(known), 0, -1, dtype=np.float64)  # first (most probable) weighs most
        return (np.stack([self.vectors[t] for t in known]) * (w / w.sum())[:, None]).sum(0).astype(np.float32)

    def __call__(self, sequences: Sequence[str]) -> np.ndarray:
        """Embeddings ``(N, D)``; tokens never seen in training are skipped (all unknown → zeros)."""
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        unknown = 0
        for i, s in enumerate(sequences):
            toks = sequence_tokens(s, self.separator)
            unknown += sum(t not in self.vectors.key_to_index for t in toks)
            out[i] = self.embed_tokens(toks)
        if unknown:
            log.warning("%d emotion token(s) not in the trained scheme were skipped", unknown)
        return out


def documents_from_corpus(
    rows: Iterable[dict[str, Any]], separator: str = DEFAULT_SEPARATOR
) -> list[list[str]]:
    """Token streams per document from emotion-corpus rows (``doc``, ``index``, ``sequence``)."""
    docs: dict[str, list[tuple[int, list[str]]]] = {}
    for r in rows:
        docs.setdefault(str(r.get("doc", "")), []).append(
            (int(r.get("index", 0)), sequence_tokens(r["sequence"], separator))
        )
    return [[t for _, toks in sorted(items) for t in toks] for items in docs.values()]
