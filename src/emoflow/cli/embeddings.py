"""Distributional emotion embeddings: ``emotion-corpus`` and ``train-embeddings``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from emoflow import config as cfg
from emoflow.cli.common import err, loads_models
from emoflow.cli.options import pipeline_config, with_options


@loads_models
@with_options(
    "text_model",
    "top_k",
    "device",
    "offline",
    help={"text_model": "Hub id or local directory.", "top_k": "Emotions per sequence."},
)
def emotion_corpus(
    text_files: Annotated[list[Path], typer.Argument(help="Plain-text files (UTF-8), one document each.")],
    out: Annotated[Path, typer.Option(help="Output JSONL: one row per sentence.")],
    *,
    options: dict[str, Any],
) -> None:
    """Build a base emotion corpus: sentences, their emotion scores and emotion sequences."""
    from emoflow.text.corpus import build_emotion_corpus
    from emoflow.text.emotion import TextEmotionClassifier

    config = pipeline_config(options)
    from emoflow.provenance_record import model_spec

    classifier = TextEmotionClassifier(model_spec(config, config.text_model))
    n = build_emotion_corpus(text_files, classifier, out, k=config.top_k)
    err.print(f"wrote {n} sentences from {len(text_files)} document(s) to {out}")


def train_embeddings(
    corpus: Annotated[Path, typer.Argument(help="Emotion corpus JSONL (from `emoflow emotion-corpus`).")],
    out: Annotated[Path, typer.Option(help="Directory for the trained scheme.")],
    dim: Annotated[int, typer.Option(help="Vector size.")] = cfg.WORD2VEC_DIM,
    window: Annotated[int, typer.Option(help="Skip-gram context window (tokens).")] = cfg.WORD2VEC_WINDOW,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = cfg.WORD2VEC_EPOCHS,
    seed: Annotated[int, typer.Option(help="Random seed.")] = cfg.DEFAULT_SEED,
) -> None:
    """Train a distributional emotion embedding scheme (Word2Vec skip-gram over emotion tokens)."""
    from emoflow.text.corpus import read_corpus
    from emoflow.text.embeddings import EmotionWord2Vec, documents_from_corpus

    docs = documents_from_corpus(read_corpus(corpus))
    scheme = EmotionWord2Vec.train(docs, vector_size=dim, window=window, epochs=epochs, seed=seed)
    scheme.save(out)
    err.print(
        f"trained on {scheme.meta['tokens']} tokens in {scheme.meta['documents']} document(s); "
        f"vocabulary: {', '.join(scheme.meta['vocabulary'])}; saved to {out}"
    )
