"""The live timeline: the windows of a stream, ``exact`` or ``pooled``, as their audio completes.

* ``exact`` (the default): each window (the grid of :func:`~emoflow.inference.window_spans`)
  through the audio encoder on its own once its last sample arrived; the final, shorter windows
  when the stream ends. The encoder hears every second of audio ``window_s / hop_s`` times (3x
  with the default 3 s windows every 1 s).
* ``pooled``: the chunk grid of :func:`~emoflow.inference.pooled.pool_frames` from time 0.
  Chunk ``k`` goes through the encoder once the audio reaches its core's end + ``context_s``
  (or at the end of the stream, with the tail rules of ``pool_frames``: the last chunk keeps
  every frame to the end, a tail shorter than a frame borrows earlier audio); a window is
  emitted once every chunk whose core overlaps it is done: its embedding is the mean of the
  frames whose centres lie in it, exactly as ``analyze``'s pooled timeline (same chunks, same
  sums), at ``(chunk_s + 2 context_s) / chunk_s`` times the audio, but a window waits for its
  chunk (up to ``chunk_s + context_s`` after its last sample).

``lag_s`` of a window event: seconds from the arrival of the window's last sample to the event.
Memory: the window events, and in ``pooled`` mode the frames of the chunks that the windows not
yet emitted still need (about ``window_s + chunk_s`` of frames).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.config import TimelineConfig
from emoflow.errors import ConfigError
from emoflow.inference.pooled import ChunkFrames, chunks_per_batch, encode_chunks
from emoflow.inference.windows import cut_bounds, window_spans
from emoflow.streaming.events import WindowEvent
from emoflow.types import AudioEmotion, EmotionScores, Timeline, TimeSpan, seconds_to_samples


class LiveTimeline:
    """The windows of one stream: ``add`` after each block of audio, ``finish`` at the end.

    ``encoder``: the pipeline's audio stage (``embed``, ``labels``, ``dim``; ``pooled`` needs
    its :class:`~emoflow.inference.Inference` as ``encoder.inference``). The samples given to
    ``add`` and ``finish`` are the stream's whole 16 kHz buffer so far (``samples[:n]``).
    """

    def __init__(self, encoder: object, config: TimelineConfig) -> None:
        self.encoder = encoder
        self.config = config
        self.labels: tuple[str, ...] = encoder.labels  # type: ignore[attr-defined]
        self.dim: int = encoder.dim  # type: ignore[attr-defined]
        self.windows: list[WindowEvent] = []
        self.lags: list[float] = []
        self.compute_s = 0.0  # seconds spent in the encoder
        self.finished = False
        if config.mode == "pooled":
            inf = getattr(encoder, "inference", None)
            if inf is None:
                raise ConfigError(
                    "this audio model has no frame-level inference, so a live timeline cannot be "
                    "pooled; use the exact timeline (timeline mode exact)"
                )
            if inf.encoder.sample_rate != TARGET_RATE:
                raise ConfigError(
                    f"the audio encoder reads {inf.encoder.sample_rate} Hz, a stream is {TARGET_RATE} Hz"
                )
            self._inf = inf
            self._core = seconds_to_samples(config.chunk_s, TARGET_RATE)
            self._per_batch = chunks_per_batch(inf.encoder, inf.batch_size)
            self._ctx = seconds_to_samples(config.context_s, TARGET_RATE)
        self._next_core = 0  # pooled: where the next chunk's core starts (all before it are done)
        self._chunks: deque[ChunkFrames] = deque()  # pooled: frames the next windows still need
        self._total = np.zeros(self.dim)
        self._total_n = 0
        self._arrivals: deque[tuple[int, float]] = deque()  # pooled: (samples so far, arrival)
        self._utt_sum = np.zeros(0)  # exact: the utterance's frames pooled piece by piece
        self._utt_n = 0
        self._utt_done = 0  # samples already pooled into the utterance
        self._utterance: AudioEmotion | None = None

    @property
    def mode(self) -> str:
        return self.config.mode

    # ---- audio in -----------------------------------------------------------------------
    def add(self, samples: np.ndarray, n: int, arrived: float) -> list[WindowEvent]:
        """The windows completed by the stream's first ``n`` samples (``arrived``: when the
        latest of them arrived, ``time.monotonic()``)."""
        if self.mode == "exact":
            events = self._embed_windows(samples, n, self._complete_windows(n), arrived)
            self._pool_utterance(samples, n, final=False)
            return events
        self._arrived(n, arrived)
        cores = []
        while self._next_core + self._core + self._ctx <= n:
            cores.append(self._next_core)
            self._next_core += self._core
        self._encode(samples, n, cores)
        return self._pooled_windows(samples, n, self._complete_windows(n, self._next_core))

    def finish(self, samples: np.ndarray, n: int, arrived: float) -> list[WindowEvent]:
        """The stream ended at ``n`` samples: the remaining chunks and windows, the final ones
        shorter (the grid of ``analyze``'s timeline)."""
        if self.finished:
            return []
        self.finished = True
        c = self.config
        spans = window_spans(n / TARGET_RATE, c.window_s, c.hop_s)
        done = [w.span for w in self.windows]
        if spans[: len(done)] != done:  # the grid is one: a mismatch is a bug, never silent
            raise RuntimeError("live windows differ from the offline grid")
        if self.mode == "exact":
            events = self._embed_windows(samples, n, spans[len(done) :], arrived)
            self._utterance = self._pool_utterance(samples, n, final=True)
            return events
        self._arrived(n, arrived)
        self._encode(samples, n, list(range(self._next_core, n, self._core)))
        self._next_core = max(n, self._next_core)
        return self._pooled_windows(samples, n, spans[len(done) :])

    # ---- results ------------------------------------------------------------------------
    def timeline(self) -> Timeline:
        """The windows so far as a :class:`Timeline` (``analyze``'s, once finished)."""
        c, w = self.config, self.windows
        return Timeline(
            c.mode,
            c.window_s,
            c.hop_s,
            self.labels,
            tuple(x.span for x in w),
            np.stack([x.scores.scores for x in w]).astype(np.float32)
            if w
            else np.zeros((0, len(self.labels)), np.float32),
            np.stack([x.embedding for x in w]) if w else np.zeros((0, self.dim), np.float32),
        )

    def utterance(self) -> AudioEmotion | None:
        """Once finished, the whole recording as ``analyze`` gives it (``None`` before):
        ``pooled``, the mean of all the pass's frames, then the head (at no extra cost);
        ``exact``, pooled piece by piece as the audio came (:meth:`_pool_utterance`)."""
        if not self.finished or self.mode != "pooled":
            return self._utterance
        mean = (self._total / max(self._total_n, 1)).astype(np.float32)[None, :]
        result: AudioEmotion = self._inf.result(mean[0], self._inf.scores(mean)[0])
        return result

    def _pool_utterance(self, samples: np.ndarray, n: int, final: bool) -> AudioEmotion | None:
        """The utterance as ``analyze`` computes it: the mean of all frames of pieces of at most
        ``max_input_s``. A piece is pooled once two pieces' worth of audio followed it, and the
        rest is cut into equal pieces at the end: identical to ``analyze`` up to twice
        ``max_input_s`` (60 s for emotion2vec), pieces cut elsewhere beyond."""
        inf = getattr(self.encoder, "inference", None)
        if inf is None:  # an encoder without the Inference split: the whole recording at the end
            return self.encoder.utterance(Audio(samples[:n])) if final else None  # type: ignore[attr-defined]
        limit = seconds_to_samples(inf.encoder.max_input_s, TARGET_RATE)
        pieces: list[tuple[int, int]] = []
        while not final and n - self._utt_done >= 2 * limit:
            pieces.append((self._utt_done, self._utt_done + limit))
            self._utt_done += limit
        if final:
            done = self._utt_done
            pieces = [(done + a, done + b) for a, b in cut_bounds(n - done, limit)]
        if pieces:
            t0 = time.perf_counter()
            sums, counts = inf.frame_sums([samples[a:b] for a, b in pieces])
            self._utt_sum = sums.sum(axis=0) + (self._utt_sum if len(self._utt_sum) else 0)
            self._utt_n += int(counts.sum())
            self.compute_s += time.perf_counter() - t0
        if not final:
            return None
        mean = (self._utt_sum / max(self._utt_n, 1)).astype(np.float32)[None, :]
        result: AudioEmotion = inf.result(mean[0], inf.scores(mean)[0])
        return result

    # ---- exact --------------------------------------------------------------------------
    def _complete_windows(self, n: int, ready: int | None = None) -> list[TimeSpan]:
        """Full windows whose last sample has arrived (the grid of ``window_spans``) and, when
        ``ready`` is given, whose frames are all done (end at most ``ready`` samples)."""
        c, now = self.config, n / TARGET_RATE
        limit = now if ready is None else min(now, ready / TARGET_RATE)
        out: list[TimeSpan] = []
        k = len(self.windows)
        while True:
            start = round(k * c.hop_s, 6)
            end = round(start + c.window_s, 6)
            if end > limit:
                return out
            out.append(TimeSpan(start, end))
            k += 1

    def _embed_windows(
        self, samples: np.ndarray, n: int, spans: list[TimeSpan], arrived: float
    ) -> list[WindowEvent]:
        if not spans:
            return []
        t0 = time.perf_counter()
        emb, scores = self.encoder.embed([_slice(samples, n, s) for s in spans])  # type: ignore[attr-defined]
        self.compute_s += time.perf_counter() - t0
        now = time.monotonic()
        return [self._event(s, e, sc, now - arrived) for s, e, sc in zip(spans, emb, scores, strict=True)]

    def _event(self, span: TimeSpan, emb: np.ndarray, scores: np.ndarray, lag: float) -> WindowEvent:
        ev = WindowEvent(
            len(self.windows), span, EmotionScores(self.labels, tuple(float(x) for x in scores)), emb, lag
        )
        self.windows.append(ev)
        self.lags.append(lag)
        return ev

    # ---- pooled -------------------------------------------------------------------------
    def _arrived(self, n: int, arrived: float) -> None:
        if not self._arrivals or n > self._arrivals[-1][0]:
            self._arrivals.append((n, arrived))

    def _encode(self, samples: np.ndarray, n: int, cores: list[int]) -> None:
        c, per = self.config, self._per_batch
        for b in range(0, len(cores), per):
            t0 = time.perf_counter()
            chunks = encode_chunks(self._inf.encoder, samples, cores[b : b + per], n, c.chunk_s, c.context_s)
            self.compute_s += time.perf_counter() - t0
            for chunk in chunks:
                if len(chunk.centres) == 0:
                    continue
                self._total += chunk.frames.sum(axis=0)
                self._total_n += len(chunk.centres)
                self._chunks.append(chunk)

    def _pooled_windows(self, samples: np.ndarray, n: int, spans: list[TimeSpan]) -> list[WindowEvent]:
        """Windows from the frames of the done chunks: the sums ``pool_frames`` makes (the same
        chunks, in the same order); a window without a frame centre goes through the model on its
        own, as ``analyze`` does."""
        if not spans:
            return []
        starts = np.array([s.start for s in spans])
        ends = np.array([s.end for s in spans])
        sums = np.zeros((len(spans), self.dim))
        counts = np.zeros(len(spans))
        for chunk in self._chunks:
            chunk.add_to(sums, counts, starts, ends)
        empty = counts == 0
        if empty.any():
            t0 = time.perf_counter()
            audio = Audio(samples[:n].copy())
            exact = self._inf.spans(audio, [spans[int(i)] for i in np.flatnonzero(empty)])
            sums[empty], counts[empty] = np.stack([r.embedding for r in exact]), np.ones(len(exact))
            self.compute_s += time.perf_counter() - t0
        emb = (sums / counts[:, None]).astype(np.float32)
        scores = self._inf.scores(emb)
        now = time.monotonic()
        out = [
            self._event(s, e, sc, now - self._arrival_of(s.end))
            for s, e, sc in zip(spans, emb, scores, strict=True)
        ]
        self._forget()
        return out

    def _arrival_of(self, t: float) -> float:
        """When the sample at ``t`` seconds (a window's end) arrived."""
        end = seconds_to_samples(t, TARGET_RATE)
        for m, arrived in self._arrivals:
            if m >= end:
                return arrived
        return self._arrivals[-1][1]

    def _forget(self) -> None:
        """Drop the frames and arrivals that no window still to come needs."""
        c = self.config
        k = len(self.windows)
        start = round(k * c.hop_s, 6)
        while self._chunks and self._chunks[0].centres[-1] < start:
            self._chunks.popleft()
        first = seconds_to_samples(start, TARGET_RATE)  # every window to come ends after it
        while len(self._arrivals) > 1 and self._arrivals[0][0] < first:
            self._arrivals.popleft()


def _slice(samples: np.ndarray, n: int, span: TimeSpan) -> np.ndarray:
    a = seconds_to_samples(span.start, TARGET_RATE)
    b = min(n, seconds_to_samples(span.end, TARGET_RATE))
    return samples[a : max(a, b)].copy()
