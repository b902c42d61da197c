"""Read word-level transcripts and repair what ASR output gets wrong.

Accepted shapes (detected from the content):

* CrisperWhisper / transformers pipeline: ``{"text", "chunks": [{"text", "timestamp": [start, end]}]}``
* faster-whisper: ``{"segments": [{"words": [{"word", "start", "end", "probability"}]}]}``
  (or a bare list of such segments)
* emoflow's own transcript JSON:
  ``{"schema_version", "text", "language", "words": [{"text", "start", "end"}]}``

Every transcript read gets the repairs of :mod:`emoflow.asr.repair` (missing times
interpolated, monotonic times, word pieces joined, fillers kept unless ``drop_fillers``);
its names are re-exported here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from emoflow.asr.repair import (
    END_TOLERANCE_S,
    FAR_PAST_END_S,
    FILLER_RE,
    PAUSE_SPLIT_S,
    RawWord,
    adjust_pauses,
    is_filler,
    repair_words,
)
from emoflow.errors import TranscriptError
from emoflow.types import Transcript

__all__ = [  # the reading and writing here, and the repairs that have always been importable from here
    "END_TOLERANCE_S",
    "EXPECTED",
    "FAR_PAST_END_S",
    "FILLER_RE",
    "MAX_TIME_S",
    "PAUSE_SPLIT_S",
    "RawWord",
    "adjust_pauses",
    "is_filler",
    "raw_words_from_json",
    "read_transcript",
    "repair_words",
    "transcript_from_json",
    "write_hf_json",
]

MAX_TIME_S = 1e6  # ~11.6 days: no recording is longer; a larger time is in another unit or garbage
EXPECTED = (
    'a CrisperWhisper/transformers JSON {"text", "chunks": [{"text", "timestamp": [start, end]}]}, '
    'a faster-whisper JSON {"segments": [{"words": [{"word", "start", "end"}]}]} '
    'or an emoflow transcript {"words": [{"text", "start", "end"}]}'
)


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
