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


def chunk_bounds(a: int, n: int, core: int, ctx: int, field: int) -> tuple[int, int]:
    """``[lo, hi)``: the audio of the chunk whose core starts at sample ``a`` of ``n`` (its core
    of ``core`` samples with ``ctx`` on each side); a tail shorter than one frame borrows
    earlier audio."""
    lo = max(0, a - ctx)
    hi = min(n, a + core + ctx)
    if hi - lo < field:  # a tail shorter than one frame: borrow earlier audio
        lo = max(0, hi - field)
    return lo, hi


@dataclass
class ChunkFrames:
    """The frames one chunk keeps (those whose centres lie in its core; the last chunk keeps
    every frame to the end): ``frames`` ``(m, D)`` and their ``centres`` ``(m,)`` in seconds."""

    frames: np.ndarray
    centres: np.ndarray

    @classmethod
    def keep(
        cls, frames: np.ndarray, centres: np.ndarray, a: int, n: int, core: int, rate: int
    ) -> ChunkFrames:
        """The frames (and centres) of a chunk whose core starts at sample ``a`` of ``n``."""
        keep = (centres >= a / rate) & (centres < min(n, a + core) / rate)
        if a + core >= n:  # the last chunk keeps every frame to the end
            keep = centres >= a / rate
        return cls(frames[keep], centres[keep])

    def add_to(self, sums: np.ndarray, counts: np.ndarray, starts_s: np.ndarray, ends_s: np.ndarray) -> None:
        """Add the frames whose centres lie in ``[start, end)`` to the sums and counts of the spans."""
        f, t = self.frames, self.centres
        cum = np.vstack([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])
        lo_i = np.searchsorted(t, starts_s, side="left")
        hi_i = np.searchsorted(t, ends_s, side="left")
        hit = hi_i > lo_i
        sums[hit] += cum[hi_i[hit]] - cum[lo_i[hit]]
        counts[hit] += hi_i[hit] - lo_i[hit]


def encode_chunks(
    encoder: FrameEncoder, samples: np.ndarray, cores: Sequence[int], n: int, chunk_s: float, context_s: float
) -> list[ChunkFrames]:
    """The chunks whose cores start at samples ``cores`` (in one forward pass), over the
    first ``n`` samples of ``samples``: the frames each keeps."""
    rate, hop, field = encoder.sample_rate, encoder.frame_hop, encoder.receptive_field
    core = seconds_to_samples(chunk_s, rate)
    ctx = seconds_to_samples(context_s, rate)
    waves, offsets = [], []
    for a in cores:
        lo, hi = chunk_bounds(a, n, core, ctx, field)
        waves.append(samples[lo:hi])
        offsets.append(lo)
    frames, valid = encoder.frames(waves)
    out = []
    for j, a in enumerate(cores):
        m = int(valid[j])
        centres = (offsets[j] + np.arange(m) * hop + field / 2) / rate
        out.append(ChunkFrames.keep(frames[j, :m], centres, a, n, core, rate))
    return out


def pool_frames(
    encoder: FrameEncoder,
    samples: np.ndarray,
    spans: Sequence[TimeSpan],
    chunk_s: float,
    context_s: float,
    per_batch: int,
) -> PooledFrames:
    """One pass over ``samples`` in chunks; frames pooled into ``spans`` (see the module doc)."""
    n = len(samples)
    core = seconds_to_samples(chunk_s, encoder.sample_rate)
    starts_s = np.array([s.start for s in spans])
    ends_s = np.array([s.end for s in spans])
    sums = np.zeros((len(spans), encoder.dim))
    counts = np.zeros(len(spans))
    total, total_n = np.zeros(encoder.dim), 0
    cores = list(range(0, n, core))
    for b in range(0, len(cores), per_batch):
        for chunk in encode_chunks(encoder, samples, cores[b : b + per_batch], n, chunk_s, context_s):
            if len(chunk.centres) == 0:
                continue
            total += chunk.frames.sum(axis=0)
            total_n += len(chunk.centres)
            chunk.add_to(sums, counts, starts_s, ends_s)
    return PooledFrames(sums, counts, total, total_n)
