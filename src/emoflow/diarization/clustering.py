"""Clustering speaker embeddings into speakers, with the count estimated when not given.

Pure functions over ``(n, d)`` arrays of L2-normalised embeddings (one per speech segment), so
they can be tested and tuned without a model.

The recipe, chosen on synthetic RAVDESS conversations of actors *not* in the shared test
conversations (see the benchmark notes):

1. **One speaker or more?** The raw cosine embeddings of one voice stay close whatever the
   emotion; when the last merge of average-linkage clustering on them is closer than
   ``single_speaker_distance`` the recording has one speaker.
2. **How many?** Otherwise the embeddings are centred on their mean (removes what all segments
   of the recording share: channel, language, the encoder's bias) and clustered by average
   linkage; the count is where merging stops below ``count_threshold`` (cosine distance 1.10),
   at least two. On the synthetic set this beat the best cosine silhouette less a penalty per
   speaker (the former rule, still there with ``count_threshold=None``): the silhouette almost
   never chose three speakers on ten segments.
3. The labels are numbered by first appearance.

Optional, and off by default: **nuisance projection** (NAP). Acted emotion moves GE2E embeddings
about as far as a change of speaker does; the directions along which one person's embeddings
spread across emotions are largely shared between people, so removing the top few of them
(learned on labelled clips of *other* speakers with :func:`nuisance_directions`) before
clustering makes the speakers separable. :data:`NUISANCE_CLUSTERING` holds the settings chosen
for it on held-out actors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusteringConfig:
    """Settings of :func:`cluster_speakers` (distances are cosine distances, ``1 - cos``)."""

    single_speaker_distance: float = 0.38
    count_penalty: float = 0.12
    center: bool = True
    # the count is where centred average linkage stops merging below this distance (at least
    # two clusters once the one-speaker gate has said "more than one"); None: best silhouette
    # less ``count_penalty`` per speaker beyond two
    count_threshold: float | None = 1.10

    def __post_init__(self) -> None:
        if self.count_threshold is not None and not 0.0 < self.count_threshold < 2.0:
            raise ValueError(f"count_threshold must be a distance in (0, 2), got {self.count_threshold}")


#: Clustering settings for embeddings with the nuisance directions projected out (rank 4),
#: chosen on synthetic conversations of RAVDESS actors with the directions learned on other actors.
NUISANCE_CLUSTERING = ClusteringConfig(single_speaker_distance=0.35, count_threshold=1.1)


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


def nuisance_directions(embeddings: np.ndarray, speakers: Sequence[object], rank: int = 4) -> np.ndarray:
    """The ``rank`` directions of largest within-speaker spread, ``(rank, d)`` orthonormal rows.

    ``embeddings``: ``(n, d)``, one per clip; ``speakers``: who speaks in each clip. Each
    speaker's (L2-normalised) embeddings are centred on that speaker's mean, and the top right
    singular vectors of the stacked residuals are returned. Needs at least two clips of one speaker.
    """
    x = normalize_rows(np.asarray(embeddings, dtype=np.float64))
    who = np.asarray([str(s) for s in speakers])
    if len(who) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(who)} speaker labels")
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    groups = [x[who == s] for s in dict.fromkeys(who.tolist())]
    parts = [g - g.mean(axis=0) for g in groups if len(g) > 1]
    if not parts:
        raise ValueError("nuisance directions need at least two clips of one speaker")
    _, _, vt = np.linalg.svd(np.concatenate(parts), full_matrices=False)
    return np.ascontiguousarray(vt[: min(rank, len(vt))])


def load_nuisance(path: str | None, dim: int) -> np.ndarray | None:
    """Directions from a ``.npy`` file (``(r, dim)``); None for None. Bad file: ConfigError."""
    from pathlib import Path

    from emoflow.errors import ConfigError

    if path is None:
        return None
    try:
        u = np.load(Path(path).expanduser(), allow_pickle=False)
    except (OSError, ValueError) as e:
        msg = f"cannot read nuisance directions {path!r} ({e}); give a .npy of shape (r, {dim})"
        raise ConfigError(msg) from e
    if u.ndim != 2 or u.shape[1] != dim or not np.isfinite(u).all():
        raise ConfigError(f"nuisance directions {path!r} have shape {u.shape}; need finite (r, {dim})")
    return np.asarray(u, dtype=np.float64)


def project_out(x: np.ndarray, directions: np.ndarray | None) -> np.ndarray:
    """Rows of ``x`` with their components along ``directions`` (orthonormal rows) removed,
    re-normalised; ``x`` normalised and otherwise unchanged when ``directions`` is None."""
    x = normalize_rows(x)
    if directions is None or len(directions) == 0 or len(x) == 0:
        return x
    u = np.asarray(directions, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != x.shape[1]:
        raise ValueError(f"nuisance directions of shape {u.shape} do not fit {x.shape[1]}-d embeddings")
    return normalize_rows(x - (x @ u.T) @ u)


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
    nuisance: np.ndarray | None = None,
) -> ClusteringResult:
    """Speaker labels for ``embeddings`` (``(n, d)``, one row per segment).

    ``num_speakers`` fixes the count (capped at ``n``); otherwise it is estimated within
    ``[min_speakers, max_speakers]`` (also capped at ``n``). ``n == 0`` gives no labels.
    ``nuisance``: directions to project out first (:func:`nuisance_directions`).
    """
    c = config or ClusteringConfig()
    arr = np.asarray(embeddings, dtype=np.float64)
    arr = arr.reshape(len(arr), -1) if arr.size else np.zeros((len(arr), 1))
    x = project_out(arr, nuisance if arr.size else None)
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
    if c.count_threshold is not None:
        from scipy.cluster.hierarchy import fcluster

        k_thr = len(set(fcluster(z, c.count_threshold, criterion="distance").tolist()))
        k = min(hi, max(2, lo, k_thr))
        labels = _cut(z, k)
        # per count k: the distance of the merge that would leave k - 1 clusters
        scores.update({kk: float(z[-(kk - 1), 2]) for kk in range(2, min(hi, len(z) + 1) + 1)})
        return ClusteringResult(first_appearance(labels), len(set(labels.tolist())), True, scores)
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
