"""Inference with frame-level audio encoders, apart from any one model.

The split follows pyannote's Model / Inference: a model stage (e.g.
:class:`~emoflow.speech.emotion2vec.Emotion2vecEncoder`) only turns a batch of waveforms into
frames (and pooled frames into scores, when it has a head) — the :class:`FrameEncoder`
Protocol; :class:`Inference` decides what goes through the model and how frames become
results: windows, spans, batching by padded seconds, the cutting of long inputs and the
voice side of a recording (:class:`~emoflow.types.VoiceAnalysis`). Another audio encoder
(wav2vec2, Whisper's encoder, a speaker model) plugs in by fitting ``FrameEncoder``.

Timeline modes (window ``window_s``, hop ``hop_s``; the final partial window included):

* ``exact``: each window goes through the model on its own (batched), exactly what
  running the model on that stretch of audio gives. Cost: about ``window_s / hop_s``
  times the audio's length (3x at 3 s / 1 s).
* ``pooled``: the recording goes through the model once, in chunks of ``chunk_s``
  seconds (default 8) with ``context_s`` (0.25) of overlap on each side; each window's
  embedding is the mean of the frames inside it, then the classification head. Cost:
  about 1.06x the audio. (On 2 CPU cores emotion2vec runs at ~0.22 of real time on 3-10 s
  inputs and ~0.35 on 30 s, so short chunks one at a time are fastest.)
  Frames see context beyond their window, so scores differ from ``exact`` (they are
  smoother); use ``exact`` to reproduce per-window model outputs, ``pooled`` for speed.

No input ever goes through the model in one piece longer than the encoder's ``max_input_s``
(30 s for emotion2vec): longer inputs are cut into chunks whose frames are pooled together.

Sentence spans (:meth:`Inference.analyze`) follow the timeline: with ``pooled`` each
sentence is the mean of the frames of the same one pass (so the whole voice side costs one
pass over the audio); with ``exact`` each sentence runs through the model alone.

Modules: ``encoder`` (the Protocol), ``windows`` (window spans, widening, batches, cuts),
``pooled`` (the chunked one-pass pooling), ``core`` (:class:`Inference`).
"""

from emoflow.inference.core import Inference, InferenceMethods
from emoflow.inference.encoder import FrameEncoder, valid_frame_sums
from emoflow.inference.pooled import PooledFrames, pool_frames
from emoflow.inference.windows import MIN_SPAN_S, batches_by_length, cut_bounds, widen, window_spans

__all__ = [
    "MIN_SPAN_S",
    "FrameEncoder",
    "Inference",
    "InferenceMethods",
    "PooledFrames",
    "batches_by_length",
    "cut_bounds",
    "pool_frames",
    "valid_frame_sums",
    "widen",
    "window_spans",
]
