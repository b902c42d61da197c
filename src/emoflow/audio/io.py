"""Decode, downmix, resample and validate audio.

Input: a path, a binary file object, or ``(array, sample_rate)``. Output: an
:class:`Audio` holding mono float32 samples at 16 kHz. soundfile (libsndfile) reads
WAV/FLAC/OGG/MP3; containers it cannot read (m4a, mp4, webm, ...) go through PyAV.
Files are decoded and resampled block by block into one buffer, so a long recording is
never held twice. The buffer is preallocated from the header's length only up to
:data:`PREALLOC_MAX_SAMPLES` (a header may lie) and grows as blocks arrive.

Limits: ``load_audio(..., max_duration=S)`` refuses audio longer than ``S`` seconds, from
the header before decoding where the header tells (:func:`probe_duration`) and while
decoding otherwise.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
import soundfile as sf
import soxr

from emoflow.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

TARGET_RATE = 16000
BLOCK_FRAMES = 1 << 18  # ~6 s at 44.1 kHz per decode block
MIN_RATE = 4000
# the most samples (10 min at 16 kHz, 38 MB) preallocated on a header's word; beyond, the buffer grows
PREALLOC_MAX_SAMPLES = TARGET_RATE * 600
# the file extensions read as audio (a folder's recordings in batch; a corpus' clips)
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".mp3",
        ".m4a",
        ".mp4",
        ".webm",
        ".opus",
        ".aac",
        ".wma",
        ".aiff",
        ".aif",
        ".mkv",
        ".mov",
    }
)

AudioSource = Union[str, os.PathLike, IO[bytes], tuple[np.ndarray, int]]  # noqa: UP007 (runtime alias)


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples at :data:`TARGET_RATE`, plus what the source was."""

    samples: np.ndarray
    sample_rate: int = TARGET_RATE
    source_rate: int = TARGET_RATE
    source_channels: int = 1
    path: str | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def slice(self, start: float, end: float) -> np.ndarray:
        """Samples between two times in seconds (a view, clipped to the recording)."""
        from emoflow.types import seconds_to_samples

        a = max(0, seconds_to_samples(start, self.sample_rate))
        b = min(len(self.samples), seconds_to_samples(end, self.sample_rate))
        return self.samples[a : max(a, b)]


def _name(source: Any) -> str:
    if isinstance(source, Audio):
        return source.path or "audio array"
    if isinstance(source, tuple):
        return "audio array"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) and name else "<file object>"


def source_name(source: Any) -> str:
    """How messages name an audio source: its path, a file object's name, or ``audio array``."""
    return _name(source)


def check_max_duration(max_duration: float | None) -> None:
    """Raise :class:`~emoflow.errors.ConfigError` unless ``max_duration`` is None or a positive number."""
    if max_duration is None:
        return
    if isinstance(max_duration, bool) or not isinstance(max_duration, (int, float)):
        raise ConfigError(f"max duration must be a number of seconds, got {max_duration!r}")
    if not (math.isfinite(max_duration) and max_duration > 0):
        raise ConfigError(f"max duration must be a positive number of seconds, got {max_duration}")


def _too_long(name: str, max_duration: float, seconds: float | None = None) -> AudioError:
    """``seconds``: the length a header states; None when found while decoding."""
    said = f"is {seconds:.1f} s long" if seconds is not None else "is longer than that"
    return AudioError(
        f"{name}: the audio {said}, over the limit of {max_duration:g} s; "
        "cut it or raise the limit (--max-duration)"
    )


def check_finite(block: np.ndarray, name: str) -> None:
    """Decoded (or streamed) samples must be finite: NaN or infinity is an :class:`AudioError`."""
    if not np.isfinite(block).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples; re-export the file as PCM")


class SampleBuffer:
    """A growable float32 buffer: preallocated to the expected size, grown rarely, trimmed at the
    end (a decoded file's samples, and a live stream's as they arrive)."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, 1), dtype=np.float32)
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        need = self.n + len(x)
        if need > len(self.data):
            # in place where the allocator can (realloc); the buffer owns its memory
            self.data.resize(max(need, int(len(self.data) * 1.5)), refcheck=False)
        self.data[self.n : need] = x
        self.n = need

    def result(self) -> np.ndarray:
        if len(self.data) - self.n > 1024:  # grown past the end: give the spare memory back
            self.data.resize(max(self.n, 1), refcheck=False)
        return self.data[: self.n]


def _capacity(expected_frames: int | None, rate: int, max_duration: float | None) -> int:
    """Samples to preallocate: the header's length, but never more than a sane bound."""
    cap = PREALLOC_MAX_SAMPLES
    if max_duration is not None:
        cap = min(cap, math.ceil(max_duration * TARGET_RATE) + 64)
    if not expected_frames or expected_frames <= 0:
        return min(cap, TARGET_RATE * 60)
    return min(cap, math.ceil(expected_frames * TARGET_RATE / rate) + 64)


def _resample_blocks(
    blocks: Iterator[np.ndarray],
    rate: int,
    expected_frames: int | None,
    name: str,
    max_duration: float | None = None,
) -> np.ndarray:
    """Downmix (frames, channels) blocks, resample to 16 kHz, check values; one output buffer.

    Stops with :class:`AudioError` as soon as more than ``max_duration`` seconds were decoded.
    """
    out = SampleBuffer(_capacity(expected_frames, rate, max_duration))
    stream = (
        soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
        if rate != TARGET_RATE
        else None
    )
    max_frames = None if max_duration is None else math.floor(max_duration * rate)
    decoded = 0
    for block in blocks:
        decoded += len(block)
        if max_frames is not None and decoded > max_frames:
            raise _too_long(name, max_duration or 0.0)
        check_finite(block, name)
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)
        out.append(stream.resample_chunk(mono) if stream is not None else mono)
    if stream is not None:
        out.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return out.result()


def _read_soundfile(source: Any, name: str, max_duration: float | None) -> tuple[np.ndarray, int, int]:
    with sf.SoundFile(source) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        _check_rate(rate, name)
        if max_duration is not None and frames > 0 and frames / rate > max_duration:
            raise _too_long(name, max_duration, frames / rate)
        blocks = f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True)
        samples = _resample_blocks(blocks, rate, frames if frames > 0 else None, name, max_duration)
    return samples, rate, channels


def _av_duration(container: Any, stream: Any) -> float | None:
    """Seconds from a PyAV container's header (the stream's, else the container's), or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # av.time_base: microseconds
    return None


def _read_av(source: Any, name: str, max_duration: float | None) -> tuple[np.ndarray, int, int]:
    import av

    try:
        container = av.open(source if not isinstance(source, os.PathLike) else os.fspath(source))
    except Exception as e:  # PyAV raises many FFmpeg error classes
        raise AudioError(f"{name}: not a readable audio file ({_short(e)})") from e
    with container:
        if not container.streams.audio:
            raise AudioError(f"{name}: not an audio file (no audio stream found)")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 1)
        _check_rate(rate, name)
        seconds = _av_duration(container, stream)
        if max_duration is not None and seconds is not None and seconds > max_duration:
            raise _too_long(name, max_duration, seconds)
        expected = int(seconds * rate) if seconds is not None and math.isfinite(seconds) else None
        # normalise every frame to planar float at the source rate; downmix + soxr below
        resampler = av.AudioResampler(format="fltp", rate=rate)

        def blocks() -> Iterator[np.ndarray]:
            try:
                for frame in container.decode(stream):
                    for f in resampler.resample(frame):
                        yield f.to_ndarray().T
            except (av.FFmpegError, ValueError) as e:
                raise AudioError(f"{name}: the audio data is corrupt ({_short(e)})") from e

        samples = _resample_blocks(blocks(), rate, expected, name, max_duration)
    return samples, rate, channels


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__


def _check_rate(rate: int, name: str) -> None:
    if rate < MIN_RATE:
        raise AudioError(f"{name}: sample rate {rate} Hz is too low for speech (need >= {MIN_RATE} Hz)")
    if rate < 8000:
        log.warning(
            "%s: sample rate %d Hz is below 8 kHz; emotion and ASR models will be unreliable", name, rate
        )


def _from_array(
    array: np.ndarray, rate: int, max_duration: float | None = None
) -> tuple[np.ndarray, int, int]:
    a = np.asarray(array)
    if a.ndim not in (1, 2):
        raise AudioError(f"audio array must be 1-D (frames) or 2-D (frames, channels), got shape {a.shape}")
    if a.ndim == 2 and a.shape[0] < a.shape[1] and a.shape[0] <= 16:
        a = a.T  # (channels, frames) -> (frames, channels)
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    elif not np.issubdtype(a.dtype, np.floating):
        raise AudioError(f"audio array must be numeric, got dtype {a.dtype}")
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"sample rate must be a positive integer, got {rate!r}")
    _check_rate(int(rate), "audio array")
    channels = 1 if a.ndim == 1 else a.shape[1]
    a2 = a if a.ndim == 2 else a[:, None]
    if max_duration is not None and len(a2) / rate > max_duration:
        raise _too_long("audio array", max_duration, len(a2) / rate)
    blocks = (a2[i : i + BLOCK_FRAMES] for i in range(0, len(a2), BLOCK_FRAMES))
    return _resample_blocks(blocks, int(rate), len(a2), "audio array"), int(rate), channels


def probe_duration(source: AudioSource | Audio) -> float | None:
    """Seconds of audio as the source's header states them, without decoding; None when unknown.

    A header may lie (or be absent, as in some streams): :func:`load_audio` checks again
    while decoding. Never raises for unreadable input (None); a file object is rewound.
    """
    if isinstance(source, Audio):
        return source.duration
    if isinstance(source, tuple):
        try:
            array, rate = source
            n = np.shape(array)[0] if np.ndim(array) == 1 else max(np.shape(array)[:2])
            return float(n) / float(rate) if rate and rate > 0 else None
        except (TypeError, ValueError, IndexError):
            return None
    pos = source.tell() if hasattr(source, "tell") and hasattr(source, "seek") else None
    try:
        try:
            with sf.SoundFile(source) as f:
                if f.frames > 0 and f.samplerate > 0:
                    return f.frames / f.samplerate
                return None
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
            pass
        if pos is not None:
            source.seek(pos)  # type: ignore[union-attr]
        try:
            import av

            target = os.fspath(source) if isinstance(source, os.PathLike) else source
            with av.open(target) as container:
                if not container.streams.audio:
                    return None
                seconds = _av_duration(container, container.streams.audio[0])
                return seconds if seconds is not None and math.isfinite(seconds) else None
        except Exception:  # PyAV raises many FFmpeg error classes; unknown is the answer
            return None
    finally:
        if pos is not None:
            source.seek(pos)  # type: ignore[union-attr]


def load_audio(source: AudioSource | Audio, *, max_duration: float | None = None) -> Audio:
    """Load any supported audio as mono float32 at 16 kHz.

    Raises :class:`~emoflow.errors.AudioError` with a one-line reason for a missing file,
    content that is not audio, a corrupt file, zero samples, NaN/inf samples, or audio
    longer than ``max_duration`` seconds (None: no limit; checked from the header before
    decoding where it tells, else while decoding). A bad ``max_duration`` is a
    :class:`~emoflow.errors.ConfigError`.
    """
    check_max_duration(max_duration)
    if isinstance(source, Audio):
        if max_duration is not None and source.duration > max_duration:
            raise _too_long(_name(source), max_duration, source.duration)
        return source
    path: str | None = None
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("an audio tuple must be (array, sample_rate)")
        samples, rate, channels = _from_array(*source, max_duration=max_duration)
        name = "audio array"
    else:
        name = _name(source)
        if isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if not p.exists():
                raise AudioError(f"{name}: no such file")
            if p.is_dir():
                raise AudioError(f"{name}: is a directory, not an audio file")
            if p.stat().st_size == 0:
                raise AudioError(f"{name}: the file is empty")
            path = str(p)
        try:
            samples, rate, channels = _read_soundfile(source, name, max_duration)
        except sf.LibsndfileError as e:
            log.debug("soundfile cannot read %s (%s); trying PyAV", name, e)
            if hasattr(source, "seek"):
                source.seek(0)
            samples, rate, channels = _read_av(source, name, max_duration)
        except RuntimeError as e:  # libsndfile decode errors mid-stream
            raise AudioError(f"{name}: the audio data is corrupt ({_short(e)})") from e
    if len(samples) == 0:
        raise AudioError(f"{name}: the audio has zero samples")
    return Audio(
        samples=samples, sample_rate=TARGET_RATE, source_rate=rate, source_channels=channels, path=path
    )


def audio_info(path: str | os.PathLike) -> dict[str, Any]:
    """Header facts (rate, channels, frames, duration) without decoding, when soundfile can read it."""
    info = sf.info(str(path))
    return {
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "frames": info.frames,
        "duration_s": info.duration,
        "format": info.format,
        "subtype": info.subtype,
    }
