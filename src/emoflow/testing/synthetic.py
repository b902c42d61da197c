"""Synthetic (audio, text) feature sets with known structure, for testing the fusion classifier."""

from __future__ import annotations

import numpy as np

DA, DT = 32, 16


def separable(
    kind: str, n: int, seed: int, da: int = DA, dt: int = DT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 classes separable only through the audio part (``audio``), only the text part (``text``)
    or only jointly (``joint``: the XOR of one audio and one text feature). One-hot labels."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, da)).astype(np.float32)
    t = rng.standard_normal((n, dt)).astype(np.float32)
    if kind == "joint":
        y = (a[:, 0] > 0).astype(int) * 2 + (t[:, 0] > 0).astype(int)
    else:
        y = rng.integers(0, 4, n)
        # class means are fixed across seeds, so train and test share them
        means = (
            np.random.default_rng(99).standard_normal((4, da if kind == "audio" else dt)).astype(np.float32)
        )
        if kind == "audio":
            a += means[y]
        else:
            t += means[y]
    return a, t, np.eye(4, dtype=np.float32)[y]


def _directions(k: int, dim: int) -> np.ndarray:
    u = np.random.default_rng(7).standard_normal((k, dim))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def co_occurring_pairs(
    n: int, seed: int, da: int = DA, dt: int = DT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 labels in three pairs that always occur together (at least one pair per example)."""
    r = np.random.default_rng(seed)
    p = r.integers(0, 2, (n, 3))
    p[p.sum(1) == 0, r.integers(0, 3)] = 1
    y = np.repeat(p, 2, axis=1).astype(np.float32)
    x = (r.standard_normal((n, da + dt)) + 2.7 * y @ _directions(6, da + dt)).astype(np.float32)
    return x[:, :da], x[:, da:], y


def conjunctions(n: int, seed: int, da: int = DA, dt: int = DT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 labels: four observed in the features, two defined by co-occurrence (e = a and b, f = c and d)."""
    r = np.random.default_rng(seed)
    base = r.integers(0, 2, (n, 4)).astype(np.float32)
    y = np.concatenate([base, (base[:, 0] * base[:, 1])[:, None], (base[:, 2] * base[:, 3])[:, None]], 1)
    x = (r.standard_normal((n, da + dt)) + 2.5 * base @ _directions(4, da + dt)).astype(np.float32)
    return x[:, :da], x[:, da:], y.astype(np.float32)
