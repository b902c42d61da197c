"""Read word-level transcripts and repair what ASR output gets wrong.

Accepted shapes (detected from the content):

* CrisperWhisper / transformers pipeline: ``{"text", "chunks": [{"text", "timestamp": [start, end]}]}``
* faster-whisper: ``{"segments": [{"words": [{"word", "start", "end", "probability"}]}]}``
  (or a bare list of such segments)
* emoflow's own transcript JSON:
  ``{"schema_version", "text", "language", "words": [{"text", "start", "end"}]}``

Repairs (each kind counted in one :class:`~emoflow.errors.RepairWarning`): missing or
``None`` times are interpolated from the neighbours (and the audio length when known);
decreasing or overlapping times are made monotonic; leading spaces are stripped; word
pieces without a leading space (``".5"``, ``",000."``) are joined to the word before them;
filler tokens such as ``[UM]`` are kept unless ``drop_fillers``.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emoflow.errors import RepairWarning, TranscriptError
from emoflow.types import TimeSpan, Transcript, Word

FILLER_RE = re.compile(r"^\[[^\]\s]+\]$|^<[^>\s]+>$")
PAUSE_SPLIT_S = 0.12  # CrisperWhisper's split_threshold
END_TOLERANCE_S = 1.0  # how far past the audio's end the last word may start before it is an error
FAR_PAST_END_S = 60.0  # a word time this far past the audio's end is not a repairable overrun
MAX_TIME_S = 1e6  # ~11.6 days: no recording is longer; a larger time is in another unit or garbage
EXPECTED = (
    'a CrisperWhisper/transformers JSON {"text", "chunks": [{"text", "timestamp": [start, end]}]}, '
    'a faster-whisper JSON {"segments": [{"words": [{"word", "start", "end"}]}]} '
    'or an emoflow transcript {"words": [{"text", "start", "end"}]}'
)


@dataclass
class RawWord:
    """A word as read from a file, before repair: times may be missing."""

    text: str
    start: float | None
    end: float | None
    probability: float | None = None


def _brief(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TranscriptError(f"{where}: a time must be a number or null, got {_brief(v)}")
    try:
        f = float(v)
    except OverflowError:  # an integer beyond any float
        f = MAX_TIME_S * 2
    if not math.isfinite(f):
        raise TranscriptError(f"{where}: a time must be a finite number of seconds, got {_brief(v)}")
    if f > MAX_TIME_S:
        raise TranscriptError(
            f"{where}: time {_brief(v)} s is beyond any recording (more than {MAX_TIME_S:g} s); "
            "times must be in seconds"
        )
    return f if f >= 0 else None


def _probability(v: Any, where: str) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    if not (math.isfinite(f) and -1e-3 <= f <= 1 + 1e-3):  # a little rounding slack
        raise TranscriptError(f"{where}: a probability must be between 0 and 1, got {_brief(v)}")
    return min(max(f, 0.0), 1.0)


def _text(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise TranscriptError(f"{where}: word text must be a string, got {type(v).__name__}")
    return v


def _from_chunks(chunks: Any, name: str) -> list[RawWord]:
    if not isinstance(chunks, list):
        raise TranscriptError(f"{name}: 'chunks' must be a list; expected {EXPECTED}")
    out = []
    for i, c in enumerate(chunks):
        where = f"{name}: chunks[{i}]"
        if not isinstance(c, Mapping) or "text" not in c:
            raise TranscriptError(f"{where} must be an object with 'text' and 'timestamp'")
        ts = c.get("timestamp")
        if ts is None:
            ts = [None, None]
        if not isinstance(ts, (list, tuple)) or len(ts) != 2:
            raise TranscriptError(f"{where}: 'timestamp' must be [start, end], got {ts!r}")
        out.append(RawWord(_text(c["text"], where), _time(ts[0], where), _time(ts[1], where)))
    return out


def _from_segments(segments: Any, name: str) -> list[RawWord]:
    if not isinstance(segments, list):
        raise TranscriptError(f"{name}: 'segments' must be a list; expected {EXPECTED}")
    out = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, Mapping):
            raise TranscriptError(f"{name}: segments[{i}] must be an object")
        words = seg.get("words")
        if words is None:
            raise TranscriptError(
                f"{name}: segments[{i}] has no 'words'; transcribe with word timestamps "
                "(faster-whisper: word_timestamps=True)"
            )
        for j, w in enumerate(words):
            where = f"{name}: segments[{i}].words[{j}]"
            if not isinstance(w, Mapping) or "word" not in w:
                raise TranscriptError(f"{where} must be an object with 'word', 'start', 'end'")
            out.append(
                RawWord(
                    _text(w["word"], where),
                    _time(w.get("start"), where),
                    _time(w.get("end"), where),
                    _probability(w.get("probability"), where),
                )
            )
    return out


def _from_words(words: Any, name: str) -> list[RawWord]:
    if not isinstance(words, list):
        raise TranscriptError(f"{name}: 'words' must be a list; expected {EXPECTED}")
    out = []
    for i, w in enumerate(words):
        where = f"{name}: words[{i}]"
        if not isinstance(w, Mapping) or "text" not in w:
            raise TranscriptError(f"{where} must be an object with 'text', 'start', 'end'")
        out.append(
            RawWord(
                _text(w["text"], where),
                _time(w.get("start"), where),
                _time(w.get("end"), where),
                _probability(w.get("probability"), where),
            )
        )
    return out


def raw_words_from_json(data: Any, name: str = "transcript") -> tuple[list[RawWord], str | None, bool]:
    """Words from any accepted shape, the language when given, and whether word texts follow
    Whisper's leading-space convention (so pieces without a leading space continue a word)."""
    if isinstance(data, list):
        return _from_segments(data, name), None, True
    if not isinstance(data, Mapping):
        raise TranscriptError(f"{name}: expected {EXPECTED}, got a JSON {type(data).__name__}")
    lang = data.get("language") if isinstance(data.get("language"), str) else None
    if "chunks" in data:
        return _from_chunks(data["chunks"], name), lang, True
    if "segments" in data:
        return _from_segments(data["segments"], name), lang, True
    if "words" in data:
        return _from_words(data["words"], name), lang, False
    raise TranscriptError(f"{name}: no 'chunks', 'segments' or 'words' key; expected {EXPECTED}")


def _join_pieces(words: list[RawWord], counts: Counter[str]) -> list[RawWord]:
    """Join word pieces that lack Whisper's leading space to the word before them.

    Applied only when most words carry a leading space (Whisper tokenizers); CTC output,
    which has no leading spaces at all, is left alone.
    """
    if len(words) < 2:
        return words
    spaced = sum(1 for w in words[1:] if w.text[:1].isspace())
    if spaced < (len(words) - 1) / 2:
        return words
    out: list[RawWord] = [words[0]]
    for w in words[1:]:
        if w.text and not w.text[:1].isspace() and out[-1].text.strip():
            prev = out[-1]
            out[-1] = RawWord(
                prev.text + w.text,
                prev.start if prev.start is not None else w.start,
                w.end if w.end is not None else prev.end,
                None
                if prev.probability is None or w.probability is None
                else min(prev.probability, w.probability),
            )
            counts["word pieces joined"] += 1
        else:
            out.append(w)
    return out


def _fill_times(words: list[RawWord], audio_duration: float | None, counts: Counter[str]) -> np.ndarray:
    """Times as an (n, 2) array with missing ones interpolated between known neighbours.

    Start and end times are one sequence t0s, t0e, t1s, ...; unknown points are filled
    linearly along it between the nearest known points. A missing first start is 0 and a
    missing last end is the audio's end (when known; else typical word lengths are assumed).
    """
    n = len(words)
    seq = np.array(
        [[np.nan if w.start is None else w.start, np.nan if w.end is None else w.end] for w in words],
        dtype=float,
    ).reshape(-1)
    missing = np.isnan(seq)
    if not missing.any():
        return seq.reshape(n, 2)
    counts["missing times interpolated"] += int(missing.sum())
    idx = np.arange(seq.size, dtype=float)
    known_x = list(idx[~missing])
    known_y = list(seq[~missing])
    if missing[0]:  # a missing first start: the word starts where the audio does
        known_x.insert(0, 0.0)
        known_y.insert(0, 0.0)
    if missing[-1]:
        if audio_duration is not None:
            # a missing final end means the audio was cut mid-word: the word ends with the audio
            end_anchor = max(audio_duration, known_y[-1])
        else:
            # no audio length: assume the median known word length (or 0.3 s) per missing point pair
            durs = [w.end - w.start for w in words if w.start is not None and w.end is not None]
            per_point = (float(np.median(durs)) if durs else 0.3) / 2
            end_anchor = known_y[-1] + per_point * (seq.size - 1 - known_x[-1])
        known_x.append(float(seq.size - 1))
        known_y.append(end_anchor)
    filled = np.interp(idx, known_x, known_y)
    return filled.reshape(n, 2)


def _monotonic(times: np.ndarray, counts: Counter[str]) -> np.ndarray:
    """Make every word start at or after the previous word's end and end at or after its start."""
    out = times.copy()
    prev_end = 0.0
    for i in range(len(out)):
        s, e = out[i]
        changed = False
        if s < prev_end:
            s, changed = prev_end, True
        if e < s:
            e, changed = s, True
        if changed:
            counts["overlapping or decreasing times made monotonic"] += 1
        out[i] = (s, e)
        prev_end = e
    return out


def adjust_pauses(words: Sequence[Word], split_s: float = PAUSE_SPLIT_S) -> list[Word]:
    """CrisperWhisper's pause rule: for each gap between words, move the earlier end and the
    later start toward each other by ``min(gap, split_s) / 2``. Overlaps and zero gaps stay."""
    starts = [w.start for w in words]
    ends = [w.end for w in words]
    for i in range(len(words) - 1):
        gap = starts[i + 1] - ends[i]
        if gap > 0:
            half = min(gap, split_s) / 2
            ends[i] += half
            starts[i + 1] -= half
    return [
        Word(w.text, TimeSpan(round(s, 6), round(max(e, s), 6)), w.probability)
        for w, s, e in zip(words, starts, ends, strict=True)
    ]


def is_filler(text: str) -> bool:
    """Fillers as CrisperWhisper writes them: ``[UM]``, ``[UH]`` (any bracketed single token)."""
    return bool(FILLER_RE.match(text))


def repair_words(
    raw: Sequence[RawWord],
    *,
    audio_duration: float | None = None,
    drop_fillers: bool = False,
    pause_adjust: bool = False,
    whisper_spacing: bool = True,
    name: str = "transcript",
) -> list[Word]:
    """Turn raw words into clean, monotonic :class:`Word` objects; warn once with the repair counts."""
    counts: Counter[str] = Counter()
    words = _join_pieces(list(raw), counts) if whisper_spacing else list(raw)
    cleaned = []
    for w in words:
        text = w.text.strip()
        # Whisper's leading space is its word separator, not an error: count only other stray spaces
        if w.text.rstrip() != w.text or (not whisper_spacing and w.text.lstrip() != w.text):
            counts["stray spaces stripped"] += 1
        if not text:
            counts["empty words dropped"] += 1
            continue
        if drop_fillers and is_filler(text):
            counts["fillers dropped"] += 1
            continue
        cleaned.append(RawWord(text, w.start, w.end, w.probability))
    if not cleaned:
        _warn(counts, name)
        return []
    times = _fill_times(cleaned, audio_duration, counts)
    times = _monotonic(times, counts)
    if audio_duration is not None:
        last_start, last_end = float(times[-1, 0]), float(times[:, 1].max())
        if last_start > audio_duration + END_TOLERANCE_S:
            raise TranscriptError(
                f"{name}: the transcript runs to {last_start:.2f} s but the audio is only "
                f"{audio_duration:.2f} s "
                "long; is it the transcript of another recording?"
            )
        if last_end > audio_duration + FAR_PAST_END_S:
            raise TranscriptError(
                f"{name}: a word ends at {last_end:.2f} s but the audio is only {audio_duration:.2f} s "
                "long; is it the transcript of another recording?"
            )
        over = times > audio_duration
        if over.any():
            counts["times clipped to the audio's end"] += int(over.sum())
            times = np.minimum(times, audio_duration)
    out = [
        Word(w.text, TimeSpan(float(s), float(e)), w.probability)
        for w, (s, e) in zip(cleaned, times, strict=True)
    ]
    if pause_adjust:
        out = adjust_pauses(out)
    _warn(counts, name)
    return out


def _warn(counts: Counter[str], name: str) -> None:
    if counts:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        warnings.warn(f"{name}: repaired transcript ({detail})", RepairWarning, stacklevel=3)


def transcript_from_json(
    data: Any,
    *,
    name: str = "transcript",
    audio_duration: float | None = None,
    drop_fillers: bool = False,
    pause_adjust: bool = False,
) -> Transcript:
    raw, lang, spacing = raw_words_from_json(data, name)
    words = repair_words(
        raw,
        audio_duration=audio_duration,
        drop_fillers=drop_fillers,
        pause_adjust=pause_adjust,
        whisper_spacing=spacing,
        name=name,
    )
    return Transcript(tuple(words), lang)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def read_transcript(
    path: str | os.PathLike,
    *,
    audio_duration: float | None = None,
    drop_fillers: bool = False,
    pause_adjust: bool = False,
) -> Transcript:
    """Read a transcript file in any accepted shape and repair it (see module doc)."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise TranscriptError(f"{name}: no such file") from e
    except IsADirectoryError as e:
        raise TranscriptError(f"{name}: is a directory, not a transcript file") from e
    except UnicodeDecodeError as e:
        raise TranscriptError(f"{name}: not UTF-8 text; expected {EXPECTED}") from e
    except json.JSONDecodeError as e:
        raise TranscriptError(
            f"{name}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); expected {EXPECTED}"
        ) from e
    except RecursionError as e:
        raise TranscriptError(f"{name}: the JSON is nested too deeply; expected {EXPECTED}") from e
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise TranscriptError(f"{name}: invalid JSON ({_first_line(e)}); expected {EXPECTED}") from e
    except OSError as e:
        raise TranscriptError(f"{name}: cannot be read ({e.strerror or e})") from e
    return transcript_from_json(
        data, name=name, audio_duration=audio_duration, drop_fillers=drop_fillers, pause_adjust=pause_adjust
    )


def write_hf_json(transcript: Transcript, path: str | os.PathLike) -> None:
    """Write the CrisperWhisper / transformers pipeline JSON shape, atomically."""
    from emoflow.export.files import write_json_atomic

    write_json_atomic(path, transcript.to_hf_chunks())
