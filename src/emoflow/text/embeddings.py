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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emoflow.config import DEFAULT_ENCODER, DEFAULT_SEPARATOR, EmbeddingConfig
from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.models import MODEL_CACHE, ModelSpec
from emoflow.provenance import Provenance, model_provenance, remember_loaded
from emoflow.stage import ModelStage
from emoflow.text.sequences import sequence_tokens

log = logging.getLogger(__name__)

Pooling = Literal["cls", "layers"]
DEFAULT_LAYERS = EmbeddingConfig().layers  # the mean of the last four, as the settings say


class SequenceEncoder(ModelStage[tuple[Any, Any]]):
    """Extraction: embeddings of emotion-sequence strings from a pretrained encoder.

    ``layers``: hidden-state indices to average for ``pooling="layers"`` (0 is the
    embedding layer, -1 the last); ``weights``: one per layer (normalised), equal by default.
    ``model``/``tokenizer`` may be passed already built (tests, notebooks).
    """

    kind = "encoder"
    what = "sequence encoder"
    flag = "--encoder-model"
    required_files = ("config.json",)

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_ENCODER,
        *,
        pooling: Pooling = "cls",
        layers: Sequence[int] = DEFAULT_LAYERS,
        weights: Sequence[float] | None = None,
        batch_size: int = 64,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if pooling not in ("cls", "layers"):
            raise ConfigError(f"unknown pooling {pooling!r}; use cls or layers")
        if weights is not None and len(weights) != len(layers):
            raise ConfigError(f"{len(weights)} layer weights for {len(layers)} layers")
        self.pooling = pooling
        self.layers = tuple(layers)
        w = np.asarray(weights if weights is not None else [1.0] * len(layers), dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ConfigError("layer weights must be non-negative and not all zero")
        self.weights = w / w.sum()
        self._settings = extraction_settings(pooling, self.layers, weights)
        self.batch_size = batch_size
        given = (model, tokenizer) if model is not None and tokenizer is not None else None
        super().__init__(spec, loaded=given)
        config = self.model.config
        self.dim = int(getattr(config, "hidden_size", None) or config.dim)
        n_hidden = int(getattr(config, "num_hidden_layers", None) or config.n_layers) + 1
        for i in self.layers:
            if not -n_hidden <= i < n_hidden:
                raise ConfigError(
                    f"layer {i} does not exist: the encoder has hidden states 0..{n_hidden - 1}"
                )

    def load(self, path: Path) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        return model, tok

    @property
    def model(self) -> Any:
        return self.loaded[0]

    @property
    def tokenizer(self) -> Any:
        return self.loaded[1]

    def options(self) -> Mapping[str, Any]:
        """The extraction settings (pooling; layers and normalised weights for ``layers``)."""
        return self._settings

    def __call__(self, sequences: Sequence[str]) -> np.ndarray:
        """Embeddings ``(N, D)`` float32. Each distinct sequence is encoded once (a transcript
        has many sentences but few distinct top-k sequences: at most 210 for 7 labels, k=3)."""
        unique = list(dict.fromkeys(sequences))
        out = np.zeros((len(unique), self.dim), dtype=np.float32)
        for b in range(0, len(unique), self.batch_size):
            chunk = unique[b : b + self.batch_size]
            out[b : b + len(chunk)] = self.run(chunk)
        index = {s: i for i, s in enumerate(unique)}
        return out[[index[s] for s in sequences]]

    def preprocess(self, sequences: Sequence[str]) -> Any:
        return self.tokenizer(list(sequences), padding=True, truncation=True, return_tensors="pt")

    def _forward(self, batch: Any) -> Any:
        import torch

        res = self.model(
            **{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=self.pooling == "layers"
        )
        if self.pooling == "cls":
            return res.last_hidden_state[:, 0, :]
        stack = torch.stack([res.hidden_states[i][:, 0, :] for i in self.layers])  # (L, B, D)
        w = torch.as_tensor(self.weights, dtype=stack.dtype, device=stack.device)
        return (stack * w[:, None, None]).sum(0)

    def postprocess(self, outputs: Any) -> np.ndarray:
        return outputs.float().cpu().numpy()


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


def embedding_provenance(
    method: str,
    *,
    spec: ModelSpec | str,
    layers: Sequence[int] = DEFAULT_LAYERS,
    weights: Sequence[float] | None = None,
    scheme: str | os.PathLike[str] | None = None,
) -> Provenance:
    """The sequence embedding's weights and settings without loading it: ``method`` ``cls`` or
    ``layers`` (the encoder ``spec``, as :meth:`SequenceEncoder.provenance`), or ``word2vec``
    (the trained ``scheme`` folder, as :meth:`EmotionWord2Vec.provenance`)."""
    if method == "word2vec":
        return EmotionWord2Vec.scheme_provenance(scheme or "")
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    return model_provenance(spec, **extraction_settings(method, layers, weights))


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
        """Write the scheme into ``directory``; from then on its provenance names that folder."""
        from emoflow.export.files import atomic_path, write_json_atomic

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / self.VECTORS_FILE) as tmp:
            self.vectors.save(str(tmp))
        write_json_atomic(d / self.SCHEME_FILE, {k: v for k, v in self.meta.items() if k != "path"})
        self.meta["path"] = str(d)
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
        remember_loaded(d)  # results name the scheme as loaded, even if the folder changes later
        meta["path"] = str(d)
        return cls(vectors, meta)

    def provenance(self) -> Provenance:
        """The scheme's settings; once saved or loaded, its folder and content hash too (an
        unsaved scheme is ``source="given"`` with no revision)."""
        settings = {k: v for k, v in self.meta.items() if k != "vocabulary"}
        if settings.get("path"):
            return model_provenance(ModelSpec(str(settings["path"])), **settings)
        return Provenance("unsaved emotion word2vec scheme", None, None, "given", settings)

    def describe(self) -> dict[str, Any]:
        """:meth:`provenance` as the JSON record results store."""
        return self.provenance().to_dict()

    @classmethod
    def scheme_provenance(cls, directory: str | os.PathLike[str]) -> Provenance:
        """:meth:`provenance` of a saved scheme without loading its vectors."""
        d = Path(directory)
        try:
            meta = json.loads((d / cls.SCHEME_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                f"{d}: not an emotion embedding scheme ({cls.SCHEME_FILE} unreadable: "
                f"{type(e).__name__}); train one with `emoflow train-embeddings`"
            ) from None
        settings = {k: v for k, v in meta.items() if k != "vocabulary"}
        settings["path"] = str(d)
        return model_provenance(ModelSpec(str(d)), **settings)

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
