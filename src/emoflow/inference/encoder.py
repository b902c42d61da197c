"""What the inference component needs from a model: a frame-level audio encoder.

Any encoder that turns 16 kHz waveforms into one embedding per frame at a fixed hop fits
(emotion2vec, wav2vec2 / HuBERT / WavLM, Whisper's encoder): the windows, timelines, spans
and pooling of :class:`~emoflow.inference.core.Inference` are computed from its frames.
An encoder with a classification head over mean-pooled frames gives scores too; a bare
encoder (``head`` returns ``None``, ``labels == ()``) gives embeddings with empty scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameEncoder(Protocol):
    """Waveforms → frame embeddings (and, optionally, scores of pooled frames).

    Frame ``t`` of an input sees samples ``[t * frame_hop, t * frame_hop + receptive_field)``;
    its centre is at ``t * frame_hop + receptive_field / 2``.
    """

    @property
    def labels(self) -> tuple[str, ...]:
        """The head's classes in its output order; ``()`` without a head."""
        ...

    @property
    def dim(self) -> int:
        """Width of a frame embedding."""
        ...

    @property
    def sample_rate(self) -> int:
        """The rate the encoder reads (samples per second)."""
        ...

    @property
    def frame_hop(self) -> int:
        """Samples between two consecutive frames (the feature encoder's total stride)."""
        ...

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees; inputs shorter than this give no frame."""
        ...

    @property
    def max_input_s(self) -> float:
        """The longest input run in one piece (seconds); longer ones are cut and pooled."""
        ...

    @property
    def device(self) -> str:
        """Where the model runs (``cpu``, ``cuda``, ``cuda:1`` ...)."""
        ...

    @property
    def dtype_name(self) -> str:
        """The compute dtype as a plain name (``float32``, ``bfloat16``, ``float16``)."""
        ...

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One batch through the model: frames ``(B, T, D)`` float32 (inputs padded to the
        longest) and the number of valid frames of each input ``(B,)``; frames past an input's
        count are padding. Batched results must equal one-by-one results (to float precision)."""
        ...

    def head(self, embeddings: np.ndarray) -> np.ndarray | None:
        """Class probabilities ``(N, len(labels))`` of mean-pooled embeddings ``(N, D)``, or
        ``None`` for an encoder without a head."""
        ...


def valid_frame_sums(frames: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the valid frames of each input of one batch (see :meth:`FrameEncoder.frames`)."""
    n = frames.shape[1]
    counts = np.minimum(np.asarray(counts, dtype=np.int64), n)
    if (counts == n).all():
        return frames.sum(axis=1), counts
    valid = np.arange(n)[None, :] < counts[:, None]
    return (frames * valid[:, :, None]).sum(axis=1), counts
