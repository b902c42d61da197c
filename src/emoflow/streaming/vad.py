"""End-of-speech detection on a stream: Silero's speech probabilities computed as the audio
arrives (the same 512-sample frames from the first sample, the same recurrent state, so the
same probabilities as the offline :class:`~emoflow.audio.vad.SpeechDetector`), turned into
speech regions by Silero's own rule (``get_speech_timestamps_from_probs`` with the offline
settings). A *segment* (regions less than ``end_silence_s`` apart) closes once
``end_silence_s`` of non-speech followed its last region, or when it reaches ``max_segment_s``.

Each stream has its own Silero model (its recurrent state belongs to the stream; the weights
are a 2 MB TorchScript file); calls run on one torch thread, one at a time in the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emoflow import config as cfg
from emoflow.audio.io import TARGET_RATE
from emoflow.audio.vad import VadConfig
from emoflow.models import one_cpu_thread
from emoflow.types import TimeSpan

FRAME = 512  # Silero's frame at 16 kHz


def load_silero() -> Any:
    """A fresh Silero model (its own recurrent state); the caller's thread count is kept."""
    import torch

    threads = torch.get_num_threads()
    try:  # importing silero_vad sets the process to one thread
        from silero_vad import load_silero_vad

        return load_silero_vad()
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Segment:
    """A closed stretch of speech: its regions (seconds in the stream) and its span."""

    regions: tuple[TimeSpan, ...]

    @property
    def span(self) -> TimeSpan:
        return TimeSpan(self.regions[0].start, self.regions[-1].end)


class Endpointer:
    """Feed 16 kHz samples in order; closed :class:`Segment` s come out."""

    def __init__(
        self,
        end_silence_s: float = cfg.STREAM_END_SILENCE_S,
        max_segment_s: float = 28.0,
        config: VadConfig | None = None,
        model: Any = None,
    ) -> None:
        self.config = config or VadConfig()
        self.end_silence = round(end_silence_s * TARGET_RATE)
        self.max_segment = round(max_segment_s * TARGET_RATE)
        self.model = model if model is not None else load_silero()
        self.model.reset_states()
        self._pending = np.zeros(0, np.float32)  # samples of a frame not complete yet
        self._probs: list[float] = []  # probabilities of frames since frame ``_base``
        self._base = 0  # first frame still looked at (the end of the last closed segment)
        self.frames = 0  # frames computed
        self._end: int | None = None  # the stream's length in samples, once it ended
        self._closed_until = 0  # end (samples) of the last closed segment
        self._open: list[tuple[int, int]] = []  # the regions of the segment still open
        self._now = 0  # samples looked at by the last close

    def feed(self, samples: np.ndarray) -> list[Segment]:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = len(self._pending) // FRAME
        if n:
            self._run(self._pending[: n * FRAME].reshape(n, FRAME))
            self._pending = self._pending[n * FRAME :]
        return self._close(final=False)

    def finish(self) -> list[Segment]:
        """The stream ended: the last partial frame (zero-padded, as offline) and every open segment."""
        if len(self._pending):
            frame = np.zeros(FRAME, np.float32)
            frame[: len(self._pending)] = self._pending
            self._run(frame[None, :])
            self._end = (self.frames - 1) * FRAME + len(self._pending)
            self._pending = np.zeros(0, np.float32)
        return self._close(final=True)

    def _run(self, frames: np.ndarray) -> None:
        import torch

        with one_cpu_thread(), torch.inference_mode():
            for f in frames:
                self._probs.append(float(self.model(torch.from_numpy(f), TARGET_RATE).item()))
        self.frames += len(frames)

    def _regions(self, length: int) -> list[tuple[int, int]]:
        """Speech regions (samples in the stream) of the frames since ``_base``."""
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        c = self.config
        base = self._base * FRAME
        found = get_speech_timestamps_from_probs(
            self._probs,
            sampling_rate=TARGET_RATE,
            threshold=c.threshold,
            min_speech_duration_ms=c.min_speech_ms,
            min_silence_duration_ms=c.min_silence_ms,
            speech_pad_ms=c.speech_pad_ms,
            audio_length_samples=length - base,
        )
        return [(base + r["start"], base + r["end"]) for r in found]

    def _close(self, final: bool) -> list[Segment]:
        if not self._probs:
            return []
        now = self._end if final and self._end is not None else self.frames * FRAME
        regions = self._regions(now)
        out: list[Segment] = []
        group: list[tuple[int, int]] = []
        for a, b in regions:
            if group and a - group[-1][1] >= self.end_silence:
                out.append(self._segment(group))
                group = []
            group.append((a, b))
        self._open, self._now = [], now
        if group:
            quiet = now - group[-1][1] >= self.end_silence
            too_long = now - group[0][0] >= self.max_segment
            if final or quiet:
                out.append(self._segment(group))
            elif too_long:  # cut at the last pause inside, else here
                if len(group) > 1:
                    out.append(self._segment(group[:-1]))
                else:
                    out.append(self._segment([(group[0][0], now)]))
            else:
                self._open = group
        out = [s for s in out if s.regions]
        if out:
            end = round(out[-1].span.end * TARGET_RATE)
            drop = max(0, end // FRAME - self._base)
            self._probs = self._probs[drop:]
            self._base += drop
            self._closed_until = end
        elif not regions and now - self._base * FRAME > self.end_silence:
            # silence only: keep the last end_silence worth of frames (bounded memory)
            drop = max(0, (now - self.end_silence) // FRAME - self._base)
            self._probs = self._probs[drop:]
            self._base += drop
        return out

    def open_segment(self, min_silence_s: float) -> Segment | None:
        """The segment still open, if its last speech was followed by at least ``min_silence_s``
        of silence: what it will be when it closes, unless the speaker goes on first."""
        if not self._open or self._now - self._open[-1][1] < round(min_silence_s * TARGET_RATE):
            return None
        seg = self._segment(self._open)
        return seg if seg.regions else None

    def _segment(self, group: list[tuple[int, int]]) -> Segment:
        lo = self._closed_until
        spans = [TimeSpan(max(a, lo) / TARGET_RATE, b / TARGET_RATE) for a, b in group if b > lo]
        return Segment(tuple(spans))
