"""Feature extraction for the fusion classifier, cached so retraining never re-runs the big models.

Per manifest row: the voice model's embedding of the row's audio (or its ``start``-``end``
segment; emotion2vec, or a transformers encoder's hidden states chosen by ``--audio-layers``)
and the distributional embedding of the emotion sequence of its text (the row's ``text``, or
ASR of the segment when absent) — exactly the per-sentence features
``emoflow analyze`` fuses. Each row's features are stored as one ``.npz`` under
``CACHE/items/``, named by a hash of (file path, size, mtime, segment, text, model ids
and revisions, settings): a changed file or setting is extracted again, an unchanged
one never is, and an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.audio.io import Audio, load_audio
from emoflow.errors import EmoflowError, InputError
from emoflow.export.files import atomic_path, write_json_atomic
from emoflow.fusion.datasets import ManifestRow
from emoflow.fusion.feature_record import FeatureInfo, settings_hash
from emoflow.text.sequences import emotion_sequence
from emoflow.types import TimeSpan

if TYPE_CHECKING:
    from emoflow.pipeline import Pipeline

__all__ = [
    "FeatureExtractor",
    "FeatureInfo",
    "FeatureSet",
    "feature_info",
    "feature_key",
    "load_cached",
    "load_feature_info",
    "load_label_embeddings",
    "settings_hash",
]

log = logging.getLogger(__name__)

FEATURES_FILE = "features.json"


@dataclass
class FeatureSet:
    """Aligned arrays for a list of manifest rows (rows that failed are left out, see ``failures``)."""

    rows: list[ManifestRow]
    audio: np.ndarray  # (N, Da)
    text: np.ndarray  # (N, Dt)
    sequences: list[str]
    info: FeatureInfo
    failures: list[tuple[ManifestRow, str]] = field(default_factory=list)

    def subset(self, split: str | None) -> FeatureSet:
        idx = [i for i, r in enumerate(self.rows) if split is None or (r.split or "train") == split]
        return FeatureSet(
            [self.rows[i] for i in idx],
            self.audio[idx],
            self.text[idx],
            [self.sequences[i] for i in idx],
            self.info,
        )

    def __len__(self) -> int:
        return len(self.rows)


def feature_info(pipeline: Pipeline) -> FeatureInfo:
    """The record of an extraction with ``pipeline``: its models' records (their files made
    local first) and the features' widths, read from the loaded audio encoder and sequence
    embedder — an extraction loads both anyway. The record alone, loading nothing:
    :meth:`FeatureInfo.of`."""
    return FeatureInfo.of(
        pipeline.config,
        resolve=True,
        audio_dim=int(pipeline.audio_encoder.dim),
        text_dim=int(pipeline.sequence_embedder.dim),
    )


def feature_key(row: ManifestRow, settings: str) -> str:
    """What determines a row's features: the file (path, size, mtime), the segment, the text, the settings."""
    p = Path(row.audio)
    st = p.stat()
    ident = {
        "path": str(p.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "start": row.start,
        "end": row.end,
        "text": row.text,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def load_cached(rows: Sequence[ManifestRow], cache: str | os.PathLike) -> FeatureSet:
    """Features of ``rows`` from a cache, without loading any model. Rows not in the cache
    (never extracted, or their file changed since) are listed in ``failures``."""
    raw = _read_features_json(cache)
    info = _parse_info(raw, Path(cache) / FEATURES_FILE)
    da, dt = info.widths
    settings = settings_hash(raw)  # as written: a cache from an older emoflow keeps its keys
    items = Path(cache) / "items"
    ok, audio, text, seqs, failures = [], [], [], [], []
    for row in rows:
        try:
            path = items / f"{feature_key(row, settings)}.npz"
        except OSError:
            failures.append((row, f"{row.audio}: audio file not found"))
            continue
        if not path.exists():
            failures.append((row, "not in the feature cache: run `emoflow features` on this manifest"))
            continue
        with np.load(path) as z:
            audio.append(z["audio"])
            text.append(z["text"])
            seqs.append(str(z["sequence"]))
        ok.append(row)
    return FeatureSet(
        ok,
        np.stack(audio) if ok else np.zeros((0, da), np.float32),
        np.stack(text) if ok else np.zeros((0, dt), np.float32),
        seqs,
        info,
        failures,
    )


def load_label_embeddings(cache: str | os.PathLike, labels: Sequence[str]) -> np.ndarray | None:
    path = Path(cache) / "labels.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        index = {str(n): i for i, n in enumerate(z["names"])}
        if not all(lab in index for lab in labels):
            return None
        return np.stack([z["embeddings"][index[lab]] for lab in labels])


def load_feature_info(cache: str | os.PathLike) -> FeatureInfo:
    """The record of a feature cache (``CACHE/features.json``)."""
    return _parse_info(_read_features_json(cache), Path(cache) / FEATURES_FILE)


def _read_features_json(cache: str | os.PathLike) -> dict[str, Any]:
    path = Path(cache) / FEATURES_FILE
    if not path.exists():
        raise EmoflowError(f"{cache}: not a feature cache (no {FEATURES_FILE}); run `emoflow features` first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmoflowError(f"{path}: not valid JSON ({e}); run `emoflow features` again") from None
    if not isinstance(raw, dict):
        raise EmoflowError(f"{path}: not a feature record; run `emoflow features` again")
    return raw


def _parse_info(raw: Mapping[str, Any], path: Path) -> FeatureInfo:
    try:
        return FeatureInfo.from_dict(raw)
    except (InputError, KeyError, TypeError, ValueError) as e:
        raise EmoflowError(f"{path}: not a feature record ({e}); run `emoflow features` again") from None


class FeatureExtractor:
    """Extracts and caches (audio, text) features with the stages of a :class:`~emoflow.pipeline.Pipeline`."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.info = feature_info(pipeline)  # loads the audio encoder and the sequence embedder
        self._settings_hash = settings_hash(self.info)

    def save_label_embeddings(self, cache: Path, labels: Sequence[str]) -> None:
        """The sequence encoder's embedding of each label name: the fusion model's label
        embeddings start from these, so "joy" begins near where the text features put joy."""
        from emoflow.fusion.datasets import CANDIDATES

        names = list(dict.fromkeys([*CANDIDATES, *labels]))
        emb = np.asarray(self.pipeline.sequence_embedder(names), dtype=np.float32)
        with atomic_path(cache / "labels.npz", suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, names=np.array(names), embeddings=emb)

    def key(self, row: ManifestRow) -> str:
        return feature_key(row, self._settings_hash)

    def _segment(self, audio: Audio, row: ManifestRow) -> Audio:
        if row.start is None and row.end is None:
            return audio
        a = row.start or 0.0
        b = row.end if row.end is not None else audio.duration
        if a >= audio.duration or b <= a:
            raise EmoflowError(f"segment {a}-{b} s is outside the audio ({audio.duration:.2f} s)")
        span = TimeSpan(a, b)
        return Audio(audio.slice(span.start, span.end), audio.sample_rate, path=audio.path)

    def _compute(self, audio: Audio, row: ManifestRow) -> tuple[np.ndarray, np.ndarray, str, str]:
        p = self.pipeline
        seg = self._segment(audio, row)
        audio_emb = p.audio_encoder.spans(seg, [TimeSpan(0.0, seg.duration)])[0].embedding
        text = row.text
        if text is None:
            text = p.transcriber(seg).text
        scores = p.text_classifier([text or " "])[0]
        sequence = emotion_sequence(scores, p.config.top_k, p.config.separator)
        text_emb = p.sequence_embedder([sequence])[0]
        return audio_emb, text_emb, sequence, text

    def extract(
        self,
        rows: Sequence[ManifestRow],
        cache: str | os.PathLike,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> FeatureSet:
        """Features for ``rows``, computing only what the cache lacks. A row whose audio is missing
        or unreadable is listed in ``failures``; the others continue."""
        cache = Path(cache)
        items = cache / "items"
        items.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache / FEATURES_FILE, self.info.to_dict())
        ok_rows, audio_out, text_out, seqs, failures = [], [], [], [], []
        loaded: tuple[str, Audio] | None = None
        order = sorted(range(len(rows)), key=lambda i: rows[i].audio)  # decode each file once
        for done, i in enumerate(order, 1):
            row = rows[i]
            try:
                if not Path(row.audio).exists():
                    raise EmoflowError(f"{row.audio}: audio file not found")
                path = items / f"{self.key(row)}.npz"
                if not path.exists():
                    if loaded is None or loaded[0] != row.audio:
                        loaded = (row.audio, load_audio(row.audio))
                    a, t, seq, text = self._compute(loaded[1], row)
                    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
                        np.savez(f, audio=a, text=t, sequence=np.array(seq), transcript=np.array(text))
                with np.load(path) as z:
                    audio_out.append((i, z["audio"]))
                    text_out.append((i, z["text"]))
                    seqs.append((i, str(z["sequence"])))
                ok_rows.append((i, row))
            except EmoflowError as e:
                failures.append((row, str(e)))
                log.warning("skipping %s: %s", row.id, e)
            if progress:
                progress(done, len(rows), row.audio)
        self.save_label_embeddings(cache, sorted({lab for r in rows for lab in r.labels}))
        by_index = sorted(range(len(ok_rows)), key=lambda k: ok_rows[k][0])
        da, dt = self.info.widths
        return FeatureSet(
            rows=[ok_rows[k][1] for k in by_index],
            audio=np.stack([audio_out[k][1] for k in by_index])
            if by_index
            else np.zeros((0, da), np.float32),
            text=np.stack([text_out[k][1] for k in by_index]) if by_index else np.zeros((0, dt), np.float32),
            sequences=[seqs[k][1] for k in by_index],
            info=self.info,
            failures=failures,
        )
