"""Base emotion corpora: text files → sentences → emotion scores → emotion sequences (JSONL)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emoflow.config import DEFAULT_SEPARATOR
from emoflow.errors import InputError
from emoflow.export.files import atomic_path
from emoflow.text.emotion import TextEmotionClassifier
from emoflow.text.sentences import split_text
from emoflow.text.sequences import emotion_sequence


def document_sentences(text: str) -> list[str]:
    """Sentences of a plain-text document, paragraph by paragraph (blank lines separate)."""
    out = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        para = " ".join(para.split())
        if para:
            out += [s.strip() for s in split_text(para) if s.strip()]
    return out


def build_emotion_corpus(
    files: Sequence[str | os.PathLike],
    classifier: TextEmotionClassifier,
    out: str | os.PathLike,
    k: int = 3,
    separator: str = DEFAULT_SEPARATOR,
) -> int:
    """One JSONL row per sentence: ``doc``, ``index``, ``text``, ``sequence``, ``labels``, ``scores``."""
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for path in files:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"{path}: cannot read as UTF-8 text ({e})") from e
            sentences = document_sentences(text)
            for i, (sent, sc) in enumerate(zip(sentences, classifier(sentences), strict=True)):
                ranked = sc.to_dict()
                row = {
                    "doc": str(path),
                    "index": i,
                    "text": sent,
                    "sequence": emotion_sequence(sc, k, separator),
                    **ranked,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def read_corpus(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
                    if not isinstance(row, dict) or not isinstance(row.get("sequence"), str):
                        raise InputError(f"{path}:{lineno}: each row needs a 'sequence' string")
                    yield row
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
