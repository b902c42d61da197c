"""Clustering speaker embeddings into speakers, with the count estimated when not given.

Pure functions over ``(n, d)`` arrays of L2-normalised embeddings (one per speech segment), so
they can be tested and tuned without a model.

The recipe, chosen on synthetic RAVDESS conversations of actors *not* in the shared test
conversations (see the benchmark notes):

1. **One speaker or more?** The raw cosine embeddings of one voice stay close whatever the
   emotion; when the last merge of average-linkage clustering on them is closer than
   ``single_speaker_distance`` the recording has one speaker.
2. **How many?** Otherwise the embeddings are centred on their mean (removes what all segments
   of the recording share: channel, language, the encoder's bias) and clustered by
   average-linkage for every allowed count; the count with the best cosine silhouette wins,
   less ``count_penalty`` per speaker beyond two (silhouette overrates many small clusters when
   there are few segments).
3. The labels are numbered by first appearance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusteringConfig:
    """Settings of :func:`cluster_speakers` (distances are cosine distances, ``1 - cos``)."""

    single_speaker_distance: float = 0.40
    count_penalty: float = 0.12
    center: bool = True


@dataclass(frozen=True)
class ClusteringResult:
    """Labels ``0..k-1`` per embedding (numbered by first appearance) and how ``k`` was chosen."""

    labels: np.ndarray
    num_speakers: int
    estimated: bool
    scores: dict[int, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "num_speakers": self.num_speakers,
            "estimated": self.estimated,
            "scores": {str(k): round(v, 4) for k, v in self.scores.items()},
        }


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """Relabel so that label 0 is the first one seen, 1 the next new one, ..."""
    mapping: dict[int, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(np.asarray(labels).tolist()):
        out[i] = mapping.setdefault(int(lab), len(mapping))
    return out


def _average_linkage(x: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage

    # cosine distance on unit vectors; clipped so rounding never gives a tiny negative distance
    d = np.clip(1.0 - x @ x.T, 0.0, 2.0)
    iu = np.triu_indices(len(x), 1)
    return linkage(d[iu], method="average")


def _cut(z: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return np.asarray(fcluster(z, k, criterion="maxclust"), dtype=np.int64) - 1


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2 or len(set(labels.tolist())) >= len(labels):
        return -1.0
    return float(silhouette_score(x, labels, metric="cosine"))


def cluster_speakers(
    embeddings: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int = 8,
    config: ClusteringConfig | None = None,
) -> ClusteringResult:
    """Speaker labels for ``embeddings`` (``(n, d)``, one row per segment).

    ``num_speakers`` fixes the count (capped at ``n``); otherwise it is estimated within
    ``[min_speakers, max_speakers]`` (also capped at ``n``). ``n == 0`` gives no labels.
    """
    c = config or ClusteringConfig()
    arr = np.asarray(embeddings, dtype=np.float64)
    x = normalize_rows(arr.reshape(len(arr), -1) if arr.size else np.zeros((len(arr), 1)))
    n = len(x)
    if n == 0:
        return ClusteringResult(np.zeros(0, dtype=np.int64), 0, num_speakers is None, {})
    if num_speakers is not None:
        k = min(num_speakers, n)
        if k <= 1:
            return ClusteringResult(np.zeros(n, dtype=np.int64), 1, False, {})
        labels = _cut(_average_linkage(_centered(x) if c.center else x), k)
        return ClusteringResult(first_appearance(labels), len(set(labels.tolist())), False, {})

    lo, hi = max(1, min_speakers), max(1, min(max_speakers, n))
    lo = min(lo, hi)
    if n == 1 or hi == 1:
        return ClusteringResult(np.zeros(n, dtype=np.int64), 1, True, {})
    raw_top = float(_average_linkage(x)[-1, 2])
    scores: dict[int, float] = {1: -raw_top}
    if lo == 1 and raw_top < c.single_speaker_distance:
        log.debug("one speaker: the farthest merge is at cosine distance %.3f", raw_top)
        return ClusteringResult(np.zeros(n, dtype=np.int64), 1, True, scores)
    xc = _centered(x) if c.center else x
    z = _average_linkage(xc)
    best_k, best_score, best = 0, -np.inf, np.zeros(n, dtype=np.int64)
    for k in range(max(2, lo), hi + 1):
        labels = _cut(z, k)
        if len(set(labels.tolist())) < 2:
            continue
        s = _silhouette(xc, labels) - c.count_penalty * (k - 2)
        scores[k] = s
        if s > best_score:
            best_k, best_score, best = k, s, labels
    if best_k == 0:  # no split possible (e.g. two identical embeddings): one speaker
        return ClusteringResult(np.zeros(n, dtype=np.int64), 1, True, scores)
    return ClusteringResult(first_appearance(best), len(set(best.tolist())), True, scores)


def _centered(x: np.ndarray) -> np.ndarray:
    return normalize_rows(x - x.mean(axis=0, keepdims=True))
