"""Typed diarisation results: :class:`SpeakerTurn` and :class:`Diarization`, with RTTM I/O.

Times are seconds. Speaker labels are ``SPEAKER_00``, ``SPEAKER_01``, ... numbered in the order
of each speaker's first turn (:func:`relabel_by_first_appearance`), whatever the backend called
them, so two backends (or two runs) on the same audio label the first voice heard alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emoflow.types import SCHEMA_VERSION, TimeSpan

SPEAKER_PREFIX = "SPEAKER_"


def speaker_label(i: int) -> str:
    """The ``i``-th speaker's label: ``SPEAKER_00``, ``SPEAKER_01``, ..."""
    return f"{SPEAKER_PREFIX}{i:02d}"


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of time in which ``speaker`` talks. Turns of different speakers may overlap."""

    span: TimeSpan
    speaker: str

    def __post_init__(self) -> None:
        if not self.speaker or any(c.isspace() for c in self.speaker):
            raise ValueError(f"a speaker label must be non-empty and without spaces, got {self.speaker!r}")

    @property
    def start(self) -> float:
        return self.span.start

    @property
    def end(self) -> float:
        return self.span.end

    @property
    def duration(self) -> float:
        return self.span.duration

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "speaker": self.speaker}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpeakerTurn:
        return cls(TimeSpan(float(d["start"]), float(d["end"])), str(d["speaker"]))


def relabel_by_first_appearance(turns: Iterable[SpeakerTurn]) -> list[SpeakerTurn]:
    """Turns sorted by (start, end) with speakers renamed ``SPEAKER_00``, ``SPEAKER_01``, ... in the
    order each first speaks in that order (ties at the same start and end: the old label's order)."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
    names: dict[str, str] = {}
    for t in ordered:
        if t.speaker not in names:
            names[t.speaker] = speaker_label(len(names))
    out = [SpeakerTurn(t.span, names[t.speaker]) for t in ordered]
    return sorted(out, key=lambda t: (t.start, t.end, t.speaker))


@dataclass(frozen=True)
class Diarization:
    """Who spoke when: turns in time order and the speakers in order of first appearance.

    ``backend``: provenance of what produced it (backend name, model id and revision, the
    settings that change the result, the speaker count asked for or estimated).
    """

    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]
    backend: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        known = set(self.speakers)
        if len(known) != len(self.speakers):
            raise ValueError(f"duplicate speakers in {self.speakers}")
        missing = {t.speaker for t in self.turns} - known
        if missing:
            raise ValueError(f"turns name speakers not in the speaker list: {sorted(missing)}")

    @classmethod
    def from_turns(
        cls, turns: Iterable[SpeakerTurn], backend: Mapping[str, Any] | None = None
    ) -> Diarization:
        """Turns in any order and with any labels → a normalised result (sorted, relabelled)."""
        relabelled = relabel_by_first_appearance(turns)
        speakers: list[str] = []
        for t in relabelled:
            if t.speaker not in speakers:
                speakers.append(t.speaker)
        return cls(tuple(relabelled), tuple(speakers), dict(backend or {}))

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def talk_time(self) -> dict[str, float]:
        """Seconds each speaker talks (overlapping turns of one speaker counted once)."""
        out: dict[str, float] = {}
        for s in self.speakers:
            spans = sorted((t.span for t in self.turns if t.speaker == s), key=lambda x: x.start)
            total, cur_start, cur_end = 0.0, -1.0, -1.0
            for sp in spans:
                if sp.start > cur_end:
                    total += max(0.0, cur_end - cur_start)
                    cur_start, cur_end = sp.start, sp.end
                else:
                    cur_end = max(cur_end, sp.end)
            total += max(0.0, cur_end - cur_start)
            out[s] = total
        return out

    def speaker_at(self, t: float) -> str | None:
        """The speaker talking at time ``t`` (the one whose turn there is longest), or ``None``."""
        hits = [x for x in self.turns if x.span.contains(t)]
        return max(hits, key=lambda x: x.duration).speaker if hits else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "speakers": list(self.speakers),
            "turns": [t.to_dict() for t in self.turns],
            "backend": dict(self.backend),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diarization:
        """The inverse of :meth:`to_dict` (labels kept as stored)."""
        turns = tuple(SpeakerTurn.from_dict(t) for t in d["turns"])
        return cls(turns, tuple(str(s) for s in d["speakers"]), dict(d.get("backend") or {}))

    def to_rttm(self, file_id: str) -> str:
        """The turns in RTTM (NIST Rich Transcription Time Marked), one ``SPEAKER`` line each::

            SPEAKER <file_id> 1 <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

        Times in seconds with millisecond precision. ``file_id`` must not contain whitespace.
        """
        return turns_to_rttm(self.turns, file_id)

    @classmethod
    def from_rttm(cls, text: str, file_id: str | None = None) -> Diarization:
        """Read RTTM ``SPEAKER`` lines (of ``file_id`` only, when given). Labels are kept as written;
        the speaker list follows first appearance. Other line types and comments are skipped."""
        turns = rttm_to_turns(text, file_id)
        speakers: list[str] = []
        for t in turns:
            if t.speaker not in speakers:
                speakers.append(t.speaker)
        return cls(tuple(turns), tuple(speakers))


def turns_to_rttm(turns: Sequence[SpeakerTurn], file_id: str) -> str:
    """RTTM text for ``turns`` (see :meth:`Diarization.to_rttm`); empty string for no turns."""
    if not file_id or any(c.isspace() for c in file_id):
        raise ValueError(f"an RTTM file id must be non-empty and without whitespace, got {file_id!r}")
    lines = [
        f"SPEAKER {file_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in turns
    ]
    return "".join(lines)


def rttm_to_turns(text: str, file_id: str | None = None) -> list[SpeakerTurn]:
    """``SPEAKER`` lines of RTTM text as turns sorted by (start, end, speaker)."""
    turns: list[SpeakerTurn] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith((";", "#")) or parts[0] != "SPEAKER":
            continue
        if len(parts) < 8:
            raise ValueError(f"RTTM line {n}: expected at least 8 fields, got {len(parts)}: {line!r}")
        if file_id is not None and parts[1] != file_id:
            continue
        try:
            onset, duration = float(parts[3]), float(parts[4])
        except ValueError:
            raise ValueError(f"RTTM line {n}: onset and duration must be numbers: {line!r}") from None
        if not (math.isfinite(onset) and math.isfinite(duration)) or duration < 0:
            raise ValueError(f"RTTM line {n}: bad onset/duration: {line!r}")
        turns.append(SpeakerTurn(TimeSpan(onset, onset + duration), parts[7]))
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
