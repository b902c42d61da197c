"""Sentence tables as JSON, CSV and SRT."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from emoflow.export.tables import SENTENCE_FIELDS
from emoflow.types import Sentence, sentences_to_dict


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(s: Sentence) -> str:
    """A cue's text: the sentence, prefixed ``[SPEAKER_00] `` when it has a speaker."""
    return s.text if s.speaker is None else f"[{s.speaker}] {s.text}"


def sentences_srt(sentences: Sequence[Sentence]) -> str:
    """SubRip subtitles: one numbered block per sentence (with its speaker when diarised)."""
    blocks = [
        f"{i}\n{srt_time(s.start)} --> {srt_time(s.end)}\n{srt_text(s)}\n"
        for i, s in enumerate(sentences, start=1)
    ]
    return "\n".join(blocks)


def sentences_csv(sentences: Sequence[Sentence]) -> str:
    """One row per sentence: the fields of :meth:`Sentence.to_dict` but the words (times to the ms)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SENTENCE_FIELDS)
    for s in sentences:
        d = s.to_dict()
        w.writerow([f"{d[k]:.3f}" if k in ("start", "end") else d[k] for k in SENTENCE_FIELDS])
    return buf.getvalue()


def sentences_json(sentences: Sequence[Sentence]) -> str:
    """:func:`~emoflow.types.sentences_to_dict` as indented JSON."""
    return json.dumps(sentences_to_dict(sentences), ensure_ascii=False, indent=1) + "\n"


FORMATS = {"json": sentences_json, "csv": sentences_csv, "srt": sentences_srt}
