"""A live analysis: :class:`StreamSession` takes audio chunks of any size, in order, and gives
typed events (:mod:`emoflow.streaming.events`) as soon as their audio is complete.

* windows (:class:`~emoflow.streaming.windows.LiveTimeline`): the same grid as ``analyze``'s
  timeline (:func:`~emoflow.inference.window_spans`), in the timeline's mode: ``exact``, each
  window through the audio encoder on its own once its last sample arrived; ``pooled``, the
  chunks of ``analyze``'s pooled pass as their audio (and context) arrived, with chunks of
  ``STREAM_POOLED_CHUNK_S`` (3 s) live. So the ``window`` events equal the offline timeline of
  the same recording and settings.
* sentences: the stream's VAD (:class:`~emoflow.streaming.vad.Endpointer`) closes a speech
  region after ``end_silence_s`` of silence; the region goes through the pipeline's stages
  (:func:`~emoflow.streaming.segments.analyse_segment`).
* the end: the whole :class:`~emoflow.results.Result`, assembled by ``stage_assemble``.

Audio is never dropped: ``feed`` does the work its audio completes before returning (a caller
that receives audio meanwhile queues it: the events come late, in order, with their lag).
Memory: the recording itself (16 kHz float32, 64 kB per second, in the same growable buffer as
:func:`~emoflow.audio.io.load_audio`: the same bound as ``analyze``, which holds the decoded
recording too, and the final result carries it), the window embeddings, and Silero's
probabilities of the open speech region.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from emoflow import config as cfg
from emoflow.audio.io import TARGET_RATE, Audio, SampleBuffer, check_finite
from emoflow.errors import AudioError, ConfigError
from emoflow.fusion.voice_head import voice_from_fusion
from emoflow.pipeline import MIN_SAMPLES, Pipeline
from emoflow.results import SourceInfo
from emoflow.streaming.events import EndEvent, Event, SentenceEvent, WindowEvent
from emoflow.streaming.segments import KnownRegions, SegmentResult, analyse_segment, joined_transcript
from emoflow.streaming.vad import Endpointer, Segment
from emoflow.streaming.windows import LiveTimeline
from emoflow.types import EmotionScores, TimeSpan, VoiceAnalysis, seconds_to_samples
from emoflow.work import Work

if TYPE_CHECKING:
    from emoflow.streaming.speakers import LiveSpeakers

SEGMENT_PAD_S = cfg.STREAM_SEGMENT_PAD_S  # audio kept around a speech segment for the recogniser
MAX_FLOAT_SAMPLE = 1e3  # float samples beyond this are not audio scaled to -1..1


class StreamSession:
    """``feed(chunk)`` → events; ``finish()`` → the last events, ending with ``end``.

    ``chunk``: float samples (or integers, scaled like files), ``(frames,)`` or ``(frames,
    channels)`` at ``sample_rate`` (downmixed and resampled to 16 kHz exactly as files are).
    ``end_silence_s``: silence that closes a speech region; ``max_segment_s``: a region
    longer than this is cut (default: the ASR's ``max_segment_s``). ``max_duration``: the
    pipeline's limit applies to the stream (over it: :class:`AudioError`). ``background``:
    speech regions go through the recogniser in a thread of their own, so windows are not held
    up by it; their events come from a later ``feed``, :meth:`poll` or :meth:`finish`.
    ``asr_context_s``: audio before a region that the recogniser hears again as context (of the
    regions ``analyze`` would decode with it): more context, text closer to ``analyze``'s;
    less, a faster sentence. ``early_asr_s`` (with ``background``): silence after which the
    recogniser starts on the open region before it closes (None: only once it closed); a
    sentence then comes up to ``end_silence_s - early_asr_s`` sooner, and the work is wasted
    when the speaker goes on.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        sample_rate: int = TARGET_RATE,
        *,
        channels: int = 1,
        end_silence_s: float = cfg.STREAM_END_SILENCE_S,
        max_segment_s: float | None = None,
        name: str = "stream",
        background: bool = False,
        asr_context_s: float = cfg.STREAM_ASR_CONTEXT_S,
        early_asr_s: float | None = cfg.STREAM_EARLY_ASR_S,
    ) -> None:
        import soxr

        if not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 384_000:
            raise ConfigError(
                f"sample rate must be a whole number from 8000 to 384000 Hz, got {sample_rate!r}"
            )
        if not isinstance(channels, int) or not 1 <= channels <= 32:
            raise ConfigError(f"channels must be a whole number from 1 to 32, got {channels!r}")
        if not 0.1 <= end_silence_s <= 10:
            raise ConfigError(f"end_silence_s must be between 0.1 and 10 s, got {end_silence_s}")
        if not (isinstance(asr_context_s, (int, float)) and 0 <= asr_context_s <= 30):
            raise ConfigError(f"asr_context_s must be from 0 to 30 s, got {asr_context_s!r}")
        if max_segment_s is not None and not (
            isinstance(max_segment_s, (int, float)) and 1 <= max_segment_s <= 30
        ):
            raise ConfigError(f"max_segment_s must be from 1 to 30 s, got {max_segment_s!r}")
        if early_asr_s is not None and not (
            isinstance(early_asr_s, (int, float)) and SEGMENT_PAD_S <= early_asr_s < end_silence_s
        ):
            raise ConfigError(
                f"early_asr_s must be from {SEGMENT_PAD_S:g} s up to end_silence_s ({end_silence_s:g} s), "
                f"or None, got {early_asr_s!r}"
            )
        c = pipeline.config
        tl = c.timeline
        if tl.mode == "pooled":  # live: short chunks, so a window waits for its chunk no longer
            tl = replace(tl, chunk_s=max(tl.window_s, min(tl.chunk_s, cfg.STREAM_POOLED_CHUNK_S)))
        # segments get their speakers from LiveSpeakers, not from the pipeline's diarizer
        self.config = replace(
            c, diarize=False, speakers=None, min_speakers=None, max_speakers=None, timeline=tl
        )
        self.live_speakers: LiveSpeakers | None = None
        if c.diarize:
            from emoflow.streaming.speakers import LiveSpeakers

            ge2e = pipeline.diarizer if c.diarizer == "ge2e" else None  # never loads pyannote
            self.live_speakers = LiveSpeakers.from_config(c, ge2e)
        self._known = KnownRegions()
        p = pipeline if not c.diarize else pipeline.derive(self.config)
        # the same models as ``pipeline``; Silero regions come from the stream's own VAD
        self.pipeline = Pipeline(
            self.config,
            vad=self._known,
            transcriber=p.transcriber,
            audio_encoder=p.audio_encoder,
            text_classifier=p.text_classifier,
            sequence_embedder=p.sequence_embedder,
            fusion=p.fusion,
        )
        self.encoder = self.pipeline.audio_encoder
        # the end result is assembled with the stream's settings (diarised live: GE2E, whatever asked)
        ge2e_model = c.diarizer_model if c.diarizer == "ge2e" else None
        self._assembler = (
            self.pipeline.derive(replace(c, timeline=tl, diarizer="ge2e", diarizer_model=ge2e_model))
            if c.diarize
            else self.pipeline
        )
        self.name, self.sample_rate, self.channels = name, sample_rate, channels
        self.asr_context_s = asr_context_s
        self.timeline_config = self.config.timeline
        self._resampler = (
            soxr.ResampleStream(sample_rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
            if sample_rate != TARGET_RATE
            else None
        )
        self._audio = SampleBuffer(TARGET_RATE * 60)
        self._vad = Endpointer(end_silence_s, max_segment_s or self.config.asr.max_segment_s)
        self.windows = LiveTimeline(self.encoder, self.timeline_config)  # exact or pooled
        self._segments: list[SegmentResult] = []
        self._sentences = 0
        self._pending: deque[tuple[TimeSpan, float, Future[SegmentResult]]] = deque()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="emoflow-stream") if background else None
        self._segments_end = 0  # samples given to the recogniser so far
        self._group: list[TimeSpan] = []  # the speech regions of the recogniser's context
        self._group_from = 0  # the first sample of that context
        self.early_asr_s = early_asr_s
        self._guess: tuple[_Plan, Future[SegmentResult]] | None = None  # recognition started early
        self.early = {"used": 0, "discarded": 0}
        self.timings: dict[str, float] = {}
        self.lags: dict[str, list[float]] = {"window": self.windows.lags, "sentence": []}
        self.finished = False
        self._t0 = time.monotonic()

    # ---- state --------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        """Samples received so far (16 kHz)."""
        return self._audio.n

    @property
    def duration(self) -> float:
        return self._audio.n / TARGET_RATE

    @property
    def lag_s(self) -> float:
        """The lag of the latest event (seconds from its audio's arrival to the event)."""
        last = [v[-1] for v in self.lags.values() if v]
        return max(last) if last else 0.0

    # ---- audio in -----------------------------------------------------------------------
    def feed(self, chunk: np.ndarray, arrived: float | None = None) -> list[Event]:
        """Add ``chunk`` (the next samples of the stream) and return the events it completes.
        ``arrived``: when the chunk arrived (``time.monotonic()``; default: now), for the lag."""
        if self.finished:
            raise ConfigError("the stream has ended; start a new session")
        arrived = time.monotonic() if arrived is None else arrived
        mono = self._mono(chunk)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        return self._add(mono, arrived)

    def finish(self, arrived: float | None = None) -> list[Event]:
        """The stream ended: the last windows, the open speech region, then ``end``."""
        if self.finished:
            return []
        arrived = time.monotonic() if arrived is None else arrived
        events: list[Event] = []
        if self._resampler is not None:
            events += self._add(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True), arrived)
        self.finished = True
        n = self._audio.n
        if n < MIN_SAMPLES:
            self.close()  # nothing to analyse: the background recogniser stops too
            raise AudioError(
                f"{self.name}: the stream is only {n} samples ({n / TARGET_RATE * 1000:.1f} ms) long; "
                f"the analysis needs at least {MIN_SAMPLES / TARGET_RATE * 1000:.0f} ms"
            )
        events += self._sentences_of(self._vad.finish(), arrived)
        events += self.poll(wait=True)
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        events += self._voice_head(self.windows.finish(self._audio.data, self._audio.n, arrived))
        events.append(self._end(arrived))
        return events

    def close(self) -> None:
        """Stop without an ``end`` (the client went away): the background recogniser stops."""
        self.finished = True
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def _mono(self, chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk)
        if np.issubdtype(a.dtype, np.unsignedinteger):  # offset binary (e.g. 8-bit PCM): centred
            half = float(np.iinfo(a.dtype).max) / 2
            a = (a.astype(np.float32) - half) / half
        elif np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        elif not np.issubdtype(a.dtype, np.floating):
            raise AudioError(f"{self.name}: audio must be numeric samples, got dtype {a.dtype}")
        if a.ndim == 1 and self.channels > 1:
            if len(a) % self.channels:
                raise AudioError(
                    f"{self.name}: {len(a)} samples is not a whole number of {self.channels}-channel frames"
                )
            a = a.reshape(-1, self.channels)
        if a.ndim == 2:
            if a.shape[1] != self.channels:
                raise AudioError(f"{self.name}: chunk has {a.shape[1]} channels, the stream {self.channels}")
            a = a.mean(axis=1, dtype=np.float32)
        elif a.ndim != 1:
            raise AudioError(f"{self.name}: a chunk is (frames,) or (frames, channels), got shape {a.shape}")
        a = a.astype(np.float32, copy=False)
        check_finite(a, self.name)
        if len(a) and float(np.abs(a).max()) > MAX_FLOAT_SAMPLE:  # the models would give NaN
            raise AudioError(
                f"{self.name}: float samples must lie about -1..1, got {float(np.abs(a).max()):.3g}; "
                "send floats scaled to -1..1 (or 16-bit integers)"
            )
        return a

    def _add(self, mono: np.ndarray, arrived: float) -> list[Event]:
        limit = self.config.max_duration
        if limit is not None and (self._audio.n + len(mono)) / TARGET_RATE > limit:
            raise AudioError(
                f"{self.name}: the stream is longer than the limit of {limit:g} s; start a new one"
            )
        if not len(mono):
            return []
        self._audio.append(mono)
        events: list[Event] = self._voice_head(self.windows.add(self._audio.data, self._audio.n, arrived))
        events += self._sentences_of(self._vad.feed(mono), arrived)
        return events

    # ---- sentences ----------------------------------------------------------------------
    def _sentences_of(self, segments: list[Segment], arrived: float) -> list[Event]:
        for seg in segments:
            plan = self._plan(seg)
            self._segments_end = plan.b
            if plan.b - plan.new_from < MIN_SAMPLES:
                continue
            self._group, self._group_from = list(plan.group), plan.group_from
            guessed = self._guess
            self._guess = None
            if guessed is not None and guessed[0] == plan:  # started early: the same input
                self.early["used"] += 1
                fut = guessed[1]
            else:
                if guessed is not None and not guessed[1].cancel():
                    self.early["discarded"] += 1
                fut = self._recognise(plan)
            self._pending.append((seg.span, arrived, fut))
        self._start_early()
        return self.poll()

    def _plan(self, seg: Segment) -> _Plan:
        """What the recogniser gets for ``seg`` (the session's state is not changed): the audio
        ``[a, b)`` with its pads and context, grouped as ``analyze`` groups regions into pieces."""
        span = seg.span
        new_from = max(self._segments_end, seconds_to_samples(span.start - SEGMENT_PAD_S, TARGET_RATE))
        b = min(self._audio.n, seconds_to_samples(span.end + SEGMENT_PAD_S, TARGET_RATE))
        asr, g = self.config.asr, self._group
        if g and span.start - g[-1].end < asr.max_gap_s and span.end - g[0].start <= asr.max_segment_s:
            group, group_from = (*g, *seg.regions), self._group_from
        else:
            group, group_from = tuple(seg.regions), new_from
        a = max(group_from, new_from - round(self.asr_context_s * TARGET_RATE))
        return _Plan(a, b, new_from, group, group_from)

    def _recognise(self, plan: _Plan) -> Future[SegmentResult]:
        job = (self.pipeline, self._known, self._audio.data[plan.a : plan.b].copy(), plan.a / TARGET_RATE)
        spk = None
        if self.live_speakers is not None:  # the speaker model hears some audio before the segment
            s_from = max(0, plan.new_from - round(self.live_speakers.context_s * TARGET_RATE))
            spk = (self.live_speakers, self._audio.data[s_from : plan.b].copy(), s_from / TARGET_RATE)
        args = (*job, list(plan.group), 0, plan.new_from / TARGET_RATE, spk)
        if self._worker is None:
            return _done(analyse_segment(*args))
        # the recogniser runs beside the windows: they are not held up by it
        return self._worker.submit(analyse_segment, *args)

    def _start_early(self) -> None:
        """With a background recogniser: once the open segment's speech has been followed by
        ``early_asr_s`` of silence (and its pad has arrived), start recognising it; when the
        segment closes with the same input, that result is used (``early["used"]``), else it is
        dropped (``early["discarded"]``: the speaker went on). Not with live speakers (their
        state changes with each segment)."""
        if self._worker is None or self.early_asr_s is None or self.live_speakers is not None:
            return
        seg = self._vad.open_segment(self.early_asr_s)
        if seg is None or self._audio.n < seconds_to_samples(seg.span.end + SEGMENT_PAD_S, TARGET_RATE):
            return
        plan = self._plan(seg)
        if plan.b - plan.new_from < MIN_SAMPLES or (self._guess is not None and self._guess[0] == plan):
            return
        if self._guess is not None and not self._guess[1].cancel():
            self.early["discarded"] += 1
        self._guess = (plan, self._recognise(plan))

    def poll(self, wait: bool = False) -> list[Event]:
        """Sentence events finished by the background recogniser (``background=True``), in
        order; ``wait``: wait for all of them."""
        out: list[Event] = []
        while self._pending and (wait or self._pending[0][2].done()):
            span, arrived, fut = self._pending.popleft()
            part = fut.result()
            part.rows = [
                replace(r, sentence=replace(r.sentence, index=self._sentences + i))
                for i, r in enumerate(part.rows)
            ]
            for k, v in part.timings.items():
                self.timings[k] = self.timings.get(k, 0.0) + v
            self._segments.append(part)
            self._sentences += len(part.rows)
            if part.rows:
                ev = SentenceEvent(span, tuple(part.rows), time.monotonic() - arrived)
                self.lags["sentence"].append(ev.lag_s)
                out.append(ev)
        return out

    # ---- the end ------------------------------------------------------------------------
    def _end(self, arrived: float) -> EndEvent:
        utterance = self.windows.utterance()  # as analyze's, from the voice side of the stream
        assert utterance is not None  # a finished timeline always has one
        self.timings["audio_emotion"] = self.timings.get("audio_emotion", 0.0) + self.windows.compute_s
        audio = Audio(self._audio.result(), source_rate=self.sample_rate, source_channels=self.channels)
        enc = self.encoder
        w = self.windows.windows
        work = Work(audio)
        work.audio = audio
        work.info = SourceInfo(None, None, round(audio.duration, 6), self.sample_rate, self.channels)
        work.transcript = joined_transcript(self._segments)
        work.sentences = [r.sentence for p in self._segments for r in p.rows]
        work.text_scores = [r.text_emotion for p in self._segments for r in p.rows]
        work.sequences = [r.sequence for p in self._segments for r in p.rows]
        work.audio_scores = [r.audio_emotion for p in self._segments for r in p.rows]
        work.text_emb = _stack([p.text_emb for p in self._segments], self.pipeline.sequence_embedder.dim)
        work.audio_emb = _stack([p.audio_emb for p in self._segments], enc.dim)
        # an encoder without a head: utterance and timeline scored by the audio-only fusion model
        voice = voice_from_fusion(
            VoiceAnalysis((), utterance, self.windows.timeline(), "exact", "float32"), self.pipeline.fusion
        )
        utterance = work.utterance = voice.utterance
        work.timeline = voice.timeline
        work.voice = {"span_method": "exact", "dtype": getattr(enc, "dtype_name", "float32")}
        work.timings = dict(self.timings)
        if self.live_speakers is not None:  # the final clustering: sentences relabelled, not cut again
            from emoflow.streaming.speakers import relabel

            work.diarization = self.live_speakers.result()
            work.transcript, work.sentences = relabel(work.transcript, work.sentences, work.diarization)
        result = self._assembler.stage_assemble(work)
        summary = {
            "duration_s": round(audio.duration, 6),
            "windows": len(w),
            "sentences": len(work.sentences),
            "utterance": {
                k: round(v, 6) for k, v in zip(utterance.scores.labels, utterance.scores.scores, strict=True)
            },
            "lag_s": {k: _lag_summary(v) for k, v in self.lags.items()},
            "early_asr": dict(self.early),
            "wall_s": round(time.monotonic() - self._t0, 3),
        }
        return EndEvent(summary, result, time.monotonic() - arrived)

    def _voice_head(self, windows: list[WindowEvent]) -> list[Event]:
        """Window scores of an encoder without a head from the pipeline's ``audio-only`` fusion
        model (as ``analyze``'s timeline gets them); otherwise the windows as they are."""
        fusion = self.pipeline.fusion
        if not windows or windows[0].scores.labels or fusion is None or not fusion.scores_voice:
            return list(windows)
        probs = fusion.voice_probabilities(np.stack([w.embedding for w in windows]))
        return [
            replace(w, scores=EmotionScores(fusion.labels, tuple(float(x) for x in p)))
            for w, p in zip(windows, probs, strict=True)
        ]

    def _time(self, stage: str, t0: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0


@dataclass(frozen=True)
class _Plan:
    """A segment's input to the recogniser: samples ``[a, b)``, its new speech from ``new_from``,
    the speech regions of the context group and where that group starts."""

    a: int
    b: int
    new_from: int
    group: tuple[TimeSpan, ...]
    group_from: int


def _done(value: SegmentResult) -> Future[SegmentResult]:
    f: Future[SegmentResult] = Future()
    f.set_result(value)
    return f


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)


def _lag_summary(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"n": 0}
    a = np.asarray(lags)
    return {
        "n": len(a),
        "p50": round(float(np.percentile(a, 50)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "max": round(float(a.max()), 4),
    }
