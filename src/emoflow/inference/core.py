"""Inference over a :class:`~emoflow.inference.encoder.FrameEncoder`: the whole recording,
arbitrary spans, the sliding-window timeline (exact or pooled) and the voice side of a
recording in one call (see :mod:`emoflow.inference` for the modes and what they cost)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.errors import ConfigError
from emoflow.inference.encoder import FrameEncoder, valid_frame_sums
from emoflow.inference.pooled import chunks_per_batch, pool_frames
from emoflow.inference.windows import MIN_SPAN_S, batches_by_length, cut_bounds, widen, window_spans
from emoflow.types import (
    AudioEmotion,
    EmotionScores,
    SpanMethod,
    Timeline,
    TimeSpan,
    VoiceAnalysis,
    seconds_to_samples,
)


class Inference:
    """Windows, spans and timelines of any frame-level audio encoder.

    ``batch_size`` inputs at most per forward pass, and at most ``batch_seconds`` of padded
    audio (the longest input x the batch's size); spans shorter than ``min_span_s`` are
    widened around their middle (the model needs context).
    """

    def __init__(
        self,
        encoder: FrameEncoder,
        *,
        batch_size: int = 8,
        batch_seconds: float = 24.0,
        min_span_s: float = MIN_SPAN_S,
    ) -> None:
        if batch_size < 1 or not batch_seconds > 0:
            raise ConfigError(
                f"batch_size must be >= 1 and batch_seconds > 0, got {batch_size}, {batch_seconds}"
            )
        self.encoder = encoder
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.min_span_s = min_span_s

    # ---- frames and embeddings -----------------------------------------------------------
    def frame_sums(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Sum and count of the frames of each waveform, batched by similar length."""
        enc = self.encoder
        sums = np.zeros((len(waves), enc.dim), dtype=np.float64)
        counts = np.zeros(len(waves), dtype=np.int64)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        budget = seconds_to_samples(self.batch_seconds, enc.sample_rate)
        for idx in batches_by_length(order, [len(w) for w in waves], self.batch_size, budget):
            s, c = valid_frame_sums(*enc.frames([waves[i] for i in idx]))
            sums[idx] += s
            counts[idx] += c
        return sums, counts

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The head on pooled embeddings; ``(N, 0)`` for an encoder without a head."""
        probs = self.encoder.head(embeddings)
        return np.zeros((len(embeddings), 0), np.float32) if probs is None else probs

    def embed(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``(N, D)`` and scores ``(N, L)`` for waveforms of any length.

        Waveforms longer than the encoder's ``max_input_s`` are cut into pieces of at most
        that length; the embedding is the mean of all their frames.
        """
        enc = self.encoder
        if not waves:
            return np.zeros((0, enc.dim), np.float32), np.zeros((0, len(enc.labels)), np.float32)
        limit = seconds_to_samples(enc.max_input_s, enc.sample_rate)
        field = enc.receptive_field
        pieces, owner = [], []
        for i, w in enumerate(waves):
            if len(w) < field:
                raise ConfigError(
                    f"audio input {i} is {len(w)} samples long; the audio encoder needs at least "
                    f"{field} ({field / enc.sample_rate * 1000:.0f} ms)"
                )
            for a, b in cut_bounds(len(w), limit):
                pieces.append(w[a:b])
                owner.append(i)
        sums, counts = self.frame_sums(pieces)
        total = np.zeros((len(waves), enc.dim))
        n = np.zeros(len(waves))
        np.add.at(total, owner, sums)
        np.add.at(n, owner, counts)
        emb = (total / n[:, None]).astype(np.float32)
        return emb, self.scores(emb)

    def result(self, embedding: np.ndarray, scores: np.ndarray) -> AudioEmotion:
        return AudioEmotion(EmotionScores(self.encoder.labels, tuple(float(x) for x in scores)), embedding)

    def _mean_result(self, total: np.ndarray, count: int) -> AudioEmotion:
        mean = (total / max(count, 1)).astype(np.float32)[None, :]
        return self.result(mean[0], self.scores(mean)[0])

    def _timeline(
        self, c: TimelineConfig, spans: Sequence[TimeSpan], scores: np.ndarray, emb: np.ndarray
    ) -> Timeline:
        return Timeline(c.mode, c.window_s, c.hop_s, self.encoder.labels, tuple(spans), scores, emb)

    # ---- the recording, spans, the timeline ----------------------------------------------
    def utterance(self, audio: Audio) -> AudioEmotion:
        """The whole recording: mean of all frames (cut into ``max_input_s`` pieces), then the head."""
        self._check_rate(audio)
        emb, scores = self.embed([audio.samples])
        return self.result(emb[0], scores[0])

    def widen(self, audio: Audio, span: TimeSpan) -> TimeSpan:
        """``span`` widened around its middle to ``min_span_s`` (within the audio) when shorter."""
        return widen(span, audio.duration, self.min_span_s)

    def spans(self, audio: Audio, spans: Sequence[TimeSpan]) -> list[AudioEmotion]:
        """One result per span (e.g. each sentence), each span through the model on its own
        (batched). Spans shorter than ``min_span_s`` are widened around their middle."""
        self._check_rate(audio)
        waves = []
        for s in spans:
            w = self.widen(audio, s)
            waves.append(audio.slice(w.start, w.end))
        emb, scores = self.embed(waves)
        return [self.result(e, s) for e, s in zip(emb, scores, strict=True)]

    def timeline(self, audio: Audio, config: TimelineConfig | None = None) -> Timeline:
        return self.utterance_and_timeline(audio, config, utterance=False)[1]

    def utterance_and_timeline(
        self, audio: Audio, config: TimelineConfig | None = None, utterance: bool = True
    ) -> tuple[AudioEmotion | None, Timeline]:
        """The whole recording's result and the timeline. In ``pooled`` mode both come from
        one pass over the audio (the utterance is the mean of all its frames)."""
        c = config or TimelineConfig()
        self._check_rate(audio)
        spans = window_spans(audio.duration, c.window_s, c.hop_s)
        utt = None
        if c.mode == "exact":
            emb, scores = self.embed([audio.slice(s.start, s.end) for s in spans])
            if utterance:
                utt = self.utterance(audio)
        else:
            emb, total, count = self.pooled(audio, spans, c)
            scores = self.scores(emb)
            if utterance:
                utt = self._mean_result(total, count)
        return utt, self._timeline(c, spans, scores, emb)

    def pooled(
        self, audio: Audio, spans: Sequence[TimeSpan], c: TimelineConfig
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Embeddings ``(S, D)`` of ``spans`` from one pooled pass (:mod:`emoflow.inference.pooled`),
        and the sum and count of all the pass's frames. A span too short to hold a frame centre
        takes the embedding of its own stretch through the model."""
        self._check_rate(audio)
        per_batch = chunks_per_batch(self.encoder, self.batch_size)
        p = pool_frames(self.encoder, audio.samples, spans, c.chunk_s, c.context_s, per_batch)
        sums, counts = p.sums, p.counts
        empty = counts == 0
        if empty.any():
            exact = self.spans(audio, [spans[int(i)] for i in np.flatnonzero(empty)])
            sums[empty], counts[empty] = np.stack([r.embedding for r in exact]), np.ones(len(exact))
        return (sums / counts[:, None]).astype(np.float32), p.total, p.total_n

    # ---- the voice side of one recording -------------------------------------------------
    def analyze(
        self,
        audio: Audio,
        spans: Sequence[TimeSpan],
        config: TimelineConfig | None = None,
        span_method: SpanMethod | None = None,
    ) -> VoiceAnalysis:
        """The whole voice side of one recording: one result per span (e.g. each sentence),
        the whole recording and the timeline.

        ``span_method``: ``None`` follows the timeline's mode. ``pooled``: each span is the
        mean of the frames of the timeline's pass whose centres lie inside it, then the head,
        so with a ``pooled`` timeline the whole voice side is one pass over the audio (spans
        then see context beyond their edges, like pooled windows). ``exact``: each span runs
        through the model on its own (what the model gives on that stretch alone).
        """
        c = config or TimelineConfig()
        method: SpanMethod = span_method or ("pooled" if c.mode == "pooled" else "exact")
        if method not in ("exact", "pooled"):
            raise ConfigError(f"unknown span method {method!r}; use exact or pooled")
        if method == "exact" or not spans:
            span_results = self.spans(audio, spans) if spans else []
            utt, timeline = self.utterance_and_timeline(audio, c)
        elif c.mode == "pooled":  # windows and spans from the same pass
            windows = window_spans(audio.duration, c.window_s, c.hop_s)
            targets = windows + [self.widen(audio, s) for s in spans]
            emb, total, count = self.pooled(audio, targets, c)
            scores = self.scores(emb)
            w = len(windows)
            timeline = self._timeline(c, windows, scores[:w], emb[:w])
            span_results = [self.result(e, p) for e, p in zip(emb[w:], scores[w:], strict=True)]
            utt = self._mean_result(total, count)
        else:  # pooled spans over an exact timeline: one extra pooled pass for the spans
            emb, _, _ = self.pooled(audio, [self.widen(audio, s) for s in spans], c)
            span_results = [self.result(e, p) for e, p in zip(emb, self.scores(emb), strict=True)]
            utt, timeline = self.utterance_and_timeline(audio, c)
        assert utt is not None
        return VoiceAnalysis(tuple(span_results), utt, timeline, method, self.encoder.dtype_name)

    def _check_rate(self, audio: Audio) -> None:
        if audio.sample_rate != self.encoder.sample_rate:
            raise ConfigError(
                f"audio at {audio.sample_rate} Hz; the audio encoder reads {self.encoder.sample_rate} Hz"
            )


class InferenceMethods:
    """The voice-side methods of an audio stage (:class:`~emoflow.protocols.AudioEmotionModel`),
    each handed to the stage's :class:`Inference` (``self.inference``): an encoder stage mixes
    this in and only writes its model's ``frames`` and ``head``."""

    inference: Inference

    def embed(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``(N, D)`` and scores ``(N, L)`` for 16 kHz waveforms of any length
        (``L = 0`` for an encoder without a classification head)."""
        return self.inference.embed(waves)

    def utterance(self, audio: Audio) -> AudioEmotion:
        return self.inference.utterance(audio)

    def spans(self, audio: Audio, spans: Sequence[TimeSpan]) -> list[AudioEmotion]:
        return self.inference.spans(audio, spans)

    def timeline(self, audio: Audio, config: TimelineConfig | None = None) -> Timeline:
        return self.inference.timeline(audio, config)

    def utterance_and_timeline(
        self, audio: Audio, config: TimelineConfig | None = None, utterance: bool = True
    ) -> tuple[AudioEmotion | None, Timeline]:
        return self.inference.utterance_and_timeline(audio, config, utterance)

    def analyze(
        self,
        audio: Audio,
        spans: Sequence[TimeSpan],
        config: TimelineConfig | None = None,
        span_method: SpanMethod | None = None,
    ) -> VoiceAnalysis:
        return self.inference.analyze(audio, spans, config, span_method)
