"""What ASR output gets wrong, repaired the same way for every backend and transcript file.

Repairs (each kind counted in one :class:`~emoflow.errors.RepairWarning`): missing or
``None`` times are interpolated from the neighbours (and the audio length when known);
decreasing or overlapping times are made monotonic; leading spaces are stripped; word
pieces without a leading space (``".5"``, ``",000."``) are joined to the word before them;
filler tokens such as ``[UM]`` are kept unless ``drop_fillers``. CrisperWhisper's pause rule
(:func:`adjust_pauses`) is applied on request.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emoflow.errors import RepairWarning, TranscriptError
from emoflow.types import TimeSpan, Word

FILLER_RE = re.compile(r"^\[[^\]\s]+\]$|^<[^>\s]+>$")
PAUSE_SPLIT_S = 0.12  # CrisperWhisper's split_threshold
END_TOLERANCE_S = 1.0  # how far past the audio's end the last word may start before it is an error
FAR_PAST_END_S = 60.0  # a word time this far past the audio's end is not a repairable overrun


@dataclass
class RawWord:
    """A word as a recogniser or a transcript file gives it, before repair: times may be missing."""

    text: str
    start: float | None
    end: float | None
    probability: float | None = None


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
