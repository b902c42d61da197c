"""Where the model looks: sliding windows, widened short spans, cuts of long inputs and
batches bounded by padded audio. Plain arithmetic on times and lengths, no model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from emoflow.types import TimeSpan

MIN_SPAN_S = 0.25  # shorter spans are widened around their middle (the model needs context)


def window_spans(duration: float, window_s: float, hop_s: float) -> list[TimeSpan]:
    """Windows starting every ``hop_s`` until one reaches the end; the last may be shorter.

    Audio shorter than a window gives one window covering all of it.
    """
    spans = []
    k = 0
    while True:
        start = round(k * hop_s, 6)
        end = min(round(start + window_s, 6), duration)
        spans.append(TimeSpan(start, end))
        if end >= duration or start + hop_s >= duration:
            break
        k += 1
    return spans


def widen(span: TimeSpan, duration: float, min_s: float = MIN_SPAN_S) -> TimeSpan:
    """``span`` widened around its middle to ``min_s`` (within ``[0, duration]``) when shorter."""
    a, b = span.start, span.end
    if b - a < min_s:
        mid = (a + b) / 2
        a, b = max(0.0, mid - min_s / 2), min(duration, mid + min_s / 2)
    return TimeSpan(a, b)


def batches_by_length(
    order: Sequence[int], lengths: Sequence[int], batch_size: int, budget: int
) -> list[list[int]]:
    """Consecutive inputs of ``order`` (sorted by length), at most ``batch_size`` per batch and at
    most ``budget`` samples of padded audio (the longest input x the batch's size): activations
    grow with batch x length, and on 30 s pieces a batch of 8 would need gigabytes (emotion2vec's
    first convolution alone: 512 channels x 96k frames x 8). An input over the budget runs alone."""
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if cur is not None and len(cur) < batch_size and lengths[i] * (len(cur) + 1) <= budget:
            cur.append(i)
        else:
            batches.append([i])
    return batches


def cut_bounds(n_samples: int, limit: int) -> list[tuple[int, int]]:
    """``[a, b)`` sample bounds of the fewest equal pieces of at most ``limit`` samples."""
    n_pieces = max(1, math.ceil(n_samples / limit))
    bounds = np.linspace(0, n_samples, n_pieces + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
