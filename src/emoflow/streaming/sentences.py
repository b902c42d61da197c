"""The sentence side of a live session: closed speech regions (from the stream's
:class:`~emoflow.streaming.vad.Endpointer`) through the recogniser and the text and voice
stages (:func:`~emoflow.streaming.segments.analyse_segment`), in order, as ``sentence`` events.

Each region is heard with up to ``asr_context_s`` of earlier audio of its group (regions grouped
as ``analyze`` groups them into pieces) and ``SEGMENT_PAD_S`` around it. With a background
worker the recogniser runs beside the windows, and starts early: once the open region has been
followed by ``early_asr_s`` of silence (its pad in), it is recognised before it closes; when it
closes with the same input that result is used (``early["used"]``), otherwise it is dropped
(``early["discarded"]``: the speaker went on). Not with live speakers (their state changes with
every segment).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from emoflow import config as cfg
from emoflow.audio.io import TARGET_RATE
from emoflow.pipeline import MIN_SAMPLES, Pipeline
from emoflow.streaming.events import Event, SentenceEvent
from emoflow.streaming.segments import KnownRegions, SegmentResult, analyse_segment
from emoflow.streaming.vad import Segment
from emoflow.types import TimeSpan, seconds_to_samples

if TYPE_CHECKING:
    from emoflow.streaming.speakers import LiveSpeakers

SEGMENT_PAD_S = cfg.STREAM_SEGMENT_PAD_S  # audio kept around a speech segment for the recogniser


@dataclass(frozen=True)
class Plan:
    """A segment's input to the recogniser: samples ``[a, b)``, its new speech from ``new_from``,
    the speech regions of the context group and where that group starts."""

    a: int
    b: int
    new_from: int
    group: tuple[TimeSpan, ...]
    group_from: int


class LiveSentences:
    """``closed(segments, ...)`` after each block of audio → the sentence events done so far.

    ``pipeline`` must have been built with ``vad=known`` (the regions come from the stream);
    ``background``: the recogniser runs in a thread of its own (events come from a later call,
    :meth:`poll` or :meth:`finish`).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        known: KnownRegions,
        *,
        background: bool,
        asr_context_s: float,
        early_asr_s: float | None,
        speakers: LiveSpeakers | None = None,
    ) -> None:
        self.pipeline, self.known, self.speakers = pipeline, known, speakers
        self.asr_context_s, self.early_asr_s = asr_context_s, early_asr_s
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="emoflow-stream") if background else None
        self.segments: list[SegmentResult] = []  # the results so far, in order
        self.count = 0  # sentences so far
        self.lags: list[float] = []
        self.timings: dict[str, float] = {}
        self.early = {"used": 0, "discarded": 0}
        self._pending: deque[tuple[TimeSpan, float, Future[SegmentResult]]] = deque()
        self._segments_end = 0  # samples given to the recogniser so far
        self._group: tuple[TimeSpan, ...] = ()  # the speech regions of the recogniser's context
        self._group_from = 0  # the first sample of that context
        self._guess: tuple[Plan, Future[SegmentResult]] | None = None  # recognition started early

    def closed(
        self, segments: list[Segment], open_segment: Segment | None, audio: np.ndarray, n: int, arrived: float
    ) -> list[Event]:
        """The closed ``segments`` to the recogniser (``audio[:n]``: the stream so far;
        ``arrived``: when the audio that closed them arrived), then ``open_segment`` (the
        :meth:`~emoflow.streaming.vad.Endpointer.open_segment`) started early; the events done."""
        for seg in segments:
            plan = self._plan(seg, n)
            self._segments_end = plan.b
            if plan.b - plan.new_from < MIN_SAMPLES:
                continue
            self._group, self._group_from = plan.group, plan.group_from
            guessed, self._guess = self._guess, None
            if guessed is not None and guessed[0] == plan:  # started early: the same input
                self.early["used"] += 1
                fut = guessed[1]
            else:
                self._drop(guessed)
                fut = self._recognise(plan, audio)
            self._pending.append((seg.span, arrived, fut))
        if open_segment is not None and self.worker is not None and self.speakers is None:
            self._start_early(open_segment, audio, n)
        return self.poll()

    def _plan(self, seg: Segment, n: int) -> Plan:
        """What the recogniser gets for ``seg`` (the state is not changed): the audio ``[a, b)``
        with its pads and context, grouped as ``analyze`` groups regions into pieces."""
        span = seg.span
        new_from = max(self._segments_end, seconds_to_samples(span.start - SEGMENT_PAD_S, TARGET_RATE))
        b = min(n, seconds_to_samples(span.end + SEGMENT_PAD_S, TARGET_RATE))
        asr, g = self.pipeline.config.asr, self._group
        if g and span.start - g[-1].end < asr.max_gap_s and span.end - g[0].start <= asr.max_segment_s:
            group, group_from = (*g, *seg.regions), self._group_from
        else:
            group, group_from = tuple(seg.regions), new_from
        a = max(group_from, new_from - round(self.asr_context_s * TARGET_RATE))
        return Plan(a, b, new_from, group, group_from)

    def _recognise(self, plan: Plan, audio: np.ndarray) -> Future[SegmentResult]:
        spk = None
        if self.speakers is not None:  # the speaker model hears some audio before the segment
            s_from = max(0, plan.new_from - round(self.speakers.context_s * TARGET_RATE))
            spk = (self.speakers, audio[s_from : plan.b].copy(), s_from / TARGET_RATE)
        args = (
            self.pipeline,
            self.known,
            audio[plan.a : plan.b].copy(),
            plan.a / TARGET_RATE,
            list(plan.group),
            0,
            plan.new_from / TARGET_RATE,
            spk,
        )
        if self.worker is None:
            done: Future[SegmentResult] = Future()
            done.set_result(analyse_segment(*args))
            return done
        return self.worker.submit(analyse_segment, *args)  # beside the windows: not held up by it

    def _start_early(self, seg: Segment, audio: np.ndarray, n: int) -> None:
        if self.early_asr_s is None or n < seconds_to_samples(seg.span.end + SEGMENT_PAD_S, TARGET_RATE):
            return
        plan = self._plan(seg, n)
        if plan.b - plan.new_from < MIN_SAMPLES or (self._guess is not None and self._guess[0] == plan):
            return
        self._drop(self._guess)
        self._guess = (plan, self._recognise(plan, audio))

    def _drop(self, guessed: tuple[Plan, Future[SegmentResult]] | None) -> None:
        if guessed is not None and not guessed[1].cancel():  # already running: its work is lost
            self.early["discarded"] += 1

    def poll(self, wait: bool = False) -> list[Event]:
        """Sentence events finished by the background recogniser, in order; ``wait``: wait for
        all of them."""
        out: list[Event] = []
        while self._pending and (wait or self._pending[0][2].done()):
            span, arrived, fut = self._pending.popleft()
            part = fut.result()
            part.rows = [
                replace(r, sentence=replace(r.sentence, index=self.count + i))
                for i, r in enumerate(part.rows)
            ]
            for k, v in part.timings.items():
                self.timings[k] = self.timings.get(k, 0.0) + v
            self.segments.append(part)
            self.count += len(part.rows)
            if part.rows:
                ev = SentenceEvent(span, tuple(part.rows), time.monotonic() - arrived)
                self.lags.append(ev.lag_s)
                out.append(ev)
        return out

    def finish(self) -> list[Event]:
        """Every sentence event still to come; the worker stops."""
        events = self.poll(wait=True)
        if self.worker is not None:
            self.worker.shutdown(wait=True)
        return events

    def close(self) -> None:
        """Stop now (the client went away): queued recognition is cancelled."""
        if self.worker is not None:
            self.worker.shutdown(wait=False, cancel_futures=True)
