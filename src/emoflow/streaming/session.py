"""A live analysis: :class:`StreamSession` takes audio chunks of any size, in order, and gives
typed events (:mod:`emoflow.streaming.events`) as soon as their audio is complete.

* windows (:class:`~emoflow.streaming.windows.LiveTimeline`): the same grid as ``analyze``'s
  timeline (:func:`~emoflow.inference.window_spans`), in the timeline's mode: ``exact``, each
  window through the audio encoder on its own once its last sample arrived; ``pooled``, the
  chunks of ``analyze``'s pooled pass as their audio (and context) arrived, with chunks of
  ``STREAM_POOLED_CHUNK_S`` (3 s) live. So the ``window`` events equal the offline timeline of
  the same recording and settings.
* sentences (:class:`~emoflow.streaming.sentences.LiveSentences`): the stream's VAD
  (:class:`~emoflow.streaming.vad.Endpointer`) closes a speech region after ``end_silence_s``
  of silence; the region goes through the pipeline's stages
  (:func:`~emoflow.streaming.segments.analyse_segment`), started early with a background
  recogniser; with ``diarize``, their speakers from :class:`~emoflow.streaming.speakers.LiveSpeakers`.
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
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from emoflow import config as cfg
from emoflow.audio.io import TARGET_RATE, Audio, SampleBuffer, check_finite
from emoflow.errors import AudioError, ConfigError
from emoflow.fusion.voice_head import voice_from_fusion, voice_scores
from emoflow.pipeline import MIN_SAMPLES, Pipeline
from emoflow.results import SourceInfo
from emoflow.streaming.events import EndEvent, Event, WindowEvent
from emoflow.streaming.segments import KnownRegions, joined_transcript
from emoflow.streaming.sentences import SEGMENT_PAD_S, LiveSentences
from emoflow.streaming.vad import Endpointer
from emoflow.streaming.windows import LiveTimeline
from emoflow.types import VoiceAnalysis
from emoflow.work import Work

if TYPE_CHECKING:
    from emoflow.streaming.speakers import LiveSpeakers

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
        self.sentences = LiveSentences(
            self.pipeline,
            self._known,
            background=background,
            asr_context_s=asr_context_s,
            early_asr_s=early_asr_s,
            speakers=self.live_speakers,
        )
        self.early_asr_s = early_asr_s
        self.lags: dict[str, list[float]] = {"window": self.windows.lags, "sentence": self.sentences.lags}
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
        events += self.sentences.closed(self._vad.finish(), None, self._audio.data, self._audio.n, arrived)
        events += self.sentences.finish()
        events += self._voice_head(self.windows.finish(self._audio.data, self._audio.n, arrived))
        events.append(self._end(arrived))
        return events

    def close(self) -> None:
        """Stop without an ``end`` (the client went away): the background recogniser stops."""
        self.finished = True
        self.sentences.close()

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
        closed = self._vad.feed(mono)
        early = self._vad.open_segment(self.early_asr_s) if self.early_asr_s is not None else None
        events += self.sentences.closed(closed, early, self._audio.data, self._audio.n, arrived)
        return events

    def poll(self, wait: bool = False) -> list[Event]:
        """Sentence events finished by the background recogniser (``background=True``), in
        order; ``wait``: wait for all of them."""
        return self.sentences.poll(wait)

    # ---- the end ------------------------------------------------------------------------
    def _end(self, arrived: float) -> EndEvent:
        utterance = self.windows.utterance()  # as analyze's, from the voice side of the stream
        assert utterance is not None  # a finished timeline always has one
        timings = dict(self.sentences.timings)
        timings["audio_emotion"] = timings.get("audio_emotion", 0.0) + self.windows.compute_s
        parts = self.sentences.segments
        audio = Audio(self._audio.result(), source_rate=self.sample_rate, source_channels=self.channels)
        enc = self.encoder
        w = self.windows.windows
        work = Work(audio)
        work.audio = audio
        work.info = SourceInfo(None, None, round(audio.duration, 6), self.sample_rate, self.channels)
        work.transcript = joined_transcript(parts)
        work.sentences = [r.sentence for p in parts for r in p.rows]
        work.text_scores = [r.text_emotion for p in parts for r in p.rows]
        work.sequences = [r.sequence for p in parts for r in p.rows]
        work.audio_scores = [r.audio_emotion for p in parts for r in p.rows]
        work.text_emb = _stack([p.text_emb for p in parts], self.pipeline.sequence_embedder.dim)
        work.audio_emb = _stack([p.audio_emb for p in parts], enc.dim)
        # an encoder without a head: utterance and timeline scored by the audio-only fusion model
        voice = voice_from_fusion(
            VoiceAnalysis((), utterance, self.windows.timeline(), "exact", "float32"), self.pipeline.fusion
        )
        utterance = work.utterance = voice.utterance
        work.timeline = voice.timeline
        work.voice = {"span_method": "exact", "dtype": getattr(enc, "dtype_name", "float32")}
        work.timings = timings
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
            "early_asr": dict(self.sentences.early),
            "wall_s": round(time.monotonic() - self._t0, 3),
        }
        return EndEvent(summary, result, time.monotonic() - arrived)

    def _voice_head(self, windows: list[WindowEvent]) -> list[Event]:
        """Window scores of an encoder without a head from the pipeline's ``audio-only`` fusion
        model (as ``analyze``'s timeline gets them); otherwise the windows as they are."""
        scores = (
            voice_scores(self.pipeline.fusion, windows[0].scores, [w.embedding for w in windows])
            if windows
            else None
        )
        if scores is None:
            return list(windows)
        return [replace(w, scores=sc) for w, sc in zip(windows, scores, strict=True)]


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
