"""The pooled pass: a recording through the encoder once, in chunks with context, and the
mean of the frames inside each target span (windows of the timeline, sentences).

Chunks of ``chunk_s`` are run with ``context_s`` of audio on each side; each frame is taken
from the chunk whose core holds its centre, so every frame is computed once with context on
both sides. Span sums accumulate chunk by chunk, so memory stays bounded by one batch of
chunks whatever the recording's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emoflow.inference.encoder import FrameEncoder
from emoflow.types import TimeSpan, seconds_to_samples


@dataclass
class PooledFrames:
    """Per target span: the sum ``(S, D)`` and count ``(S,)`` of the frames whose centres lie in
    it; over the whole recording: the sum ``total`` ``(D,)`` and count ``total_n`` of all frames."""

    sums: np.ndarray
    counts: np.ndarray
    total: np.ndarray
    total_n: int


def chunks_per_batch(encoder: FrameEncoder, batch_size: int) -> int:
    """Chunks are long: on a CPU a batch of them is slower than one at a time (memory-bound)."""
    return batch_size if encoder.device.startswith("cuda") else 1


def pool_frames(
    encoder: FrameEncoder,
    samples: np.ndarray,
    spans: Sequence[TimeSpan],
    chunk_s: float,
    context_s: float,
    per_batch: int,
) -> PooledFrames:
    """One pass over ``samples`` in chunks; frames pooled into ``spans`` (see the module doc)."""
    rate, hop, field = encoder.sample_rate, encoder.frame_hop, encoder.receptive_field
    x = samples
    n = len(x)
    core = seconds_to_samples(chunk_s, rate)
    ctx = seconds_to_samples(context_s, rate)
    starts_s = np.array([s.start for s in spans])
    ends_s = np.array([s.end for s in spans])
    sums = np.zeros((len(spans), encoder.dim))
    counts = np.zeros(len(spans))
    total, total_n = np.zeros(encoder.dim), 0
    cores = list(range(0, n, core))
    for b in range(0, len(cores), per_batch):
        batch = cores[b : b + per_batch]
        waves, offsets = [], []
        for a in batch:
            lo = max(0, a - ctx)
            hi = min(n, a + core + ctx)
            if hi - lo < field:  # a tail shorter than one frame: borrow earlier audio
                lo = max(0, hi - field)
            waves.append(x[lo:hi])
            offsets.append(lo)
        frames, valid = encoder.frames(waves)
        for j, a in enumerate(batch):
            m = int(valid[j])
            centres = (offsets[j] + np.arange(m) * hop + field / 2) / rate
            keep = (centres >= a / rate) & (centres < min(n, a + core) / rate)
            if a + core >= n:  # the last chunk keeps every frame to the end
                keep = centres >= a / rate
            f, t = frames[j, :m][keep], centres[keep]
            if len(t) == 0:
                continue
            total += f.sum(axis=0)
            total_n += len(t)
            cum = np.vstack([np.zeros((1, encoder.dim)), np.cumsum(f, axis=0)])
            lo_i = np.searchsorted(t, starts_s, side="left")
            hi_i = np.searchsorted(t, ends_s, side="left")
            hit = hi_i > lo_i
            sums[hit] += cum[hi_i[hit]] - cum[lo_i[hit]]
            counts[hit] += hi_i[hit] - lo_i[hit]
    return PooledFrames(sums, counts, total, total_n)
