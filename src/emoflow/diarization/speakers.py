"""Putting speakers on words and sentences, and summarising each speaker's emotions.

Pure functions over the typed values (no models), for the pipeline's wiring:

* :func:`assign_speakers`: each word → the speaker whose turns overlap it most (overlapping
  speech → the dominant speaker); a word in no turn → the nearest turn's speaker.
* :func:`split_sentences_at_speakers`: a sentence whose words change speaker is cut there, and
  all sentences are re-indexed, so every sentence downstream has one speaker.
* :func:`speaker_summary`: per speaker, talk time, sentence count, mean voice and text
  emotion, the dominant ones and how they changed over the recording (:class:`SpeakerSummary`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emoflow.diarization.types import SpeakerTurn
from emoflow.types import Sentence, TimeSpan, Word, join_words

_EPS = 1e-9


class _TurnIndex:
    """Turns sorted by start, with a running maximum of ends, to find those near a time quickly."""

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
        self.starts = [t.start for t in self.turns]
        self.max_end: list[float] = []
        m = -math.inf
        for t in self.turns:
            m = max(m, t.end)
            self.max_end.append(m)
        # speakers in order of first appearance: the tie-break everywhere
        self.rank: dict[str, int] = {}
        for t in self.turns:
            self.rank.setdefault(t.speaker, len(self.rank))

    def overlapping(self, span: TimeSpan) -> list[SpeakerTurn]:
        """Turns sharing time with ``span`` (or containing it, for a zero-length span)."""
        hi = bisect.bisect_right(self.starts, span.end)
        out = []
        i = hi - 1
        while i >= 0 and self.max_end[i] >= span.start:
            t = self.turns[i]
            if t.end >= span.start and (t.span.overlaps(span) or span.duration == 0 or t.duration == 0):
                out.append(t)
            i -= 1
        return out

    def nearest(self, span: TimeSpan) -> SpeakerTurn:
        """The turn closest to ``span`` (gap between them; ties → earlier-appearing speaker).
        A linear scan: only words that no turn touches get here."""
        return min(self.turns, key=lambda t: (_distance(t.span, span), self.rank[t.speaker], t.start))


def _distance(a: TimeSpan, b: TimeSpan) -> float:
    return max(0.0, a.start - b.end, b.start - a.end)


def _dominant(index: _TurnIndex, span: TimeSpan) -> str | None:
    hits = index.overlapping(span)
    if not hits:
        return None
    cover: dict[str, float] = {}
    for t in hits:
        cover[t.speaker] = cover.get(t.speaker, 0.0) + t.span.overlap_duration(span)
    return max(cover, key=lambda s: (cover[s], -index.rank[s]))


def assign_speakers(words: Sequence[Word], turns: Sequence[SpeakerTurn]) -> list[str | None]:
    """The speaker of each word, in the words' order.

    A word goes to the speaker whose turns cover most of its span (several turns of one speaker
    add up; with overlapping speech the speaker covering more of the word wins; ties go to the
    speaker who appeared first). A word that no turn touches (e.g. a VAD-trimmed edge) goes to the
    nearest turn's speaker. With no turns at all every word gets ``None``.
    """
    if not turns:
        return [None] * len(words)
    index = _TurnIndex(turns)
    out: list[str | None] = []
    for w in words:
        s = _dominant(index, w.span)
        out.append(s if s is not None else index.nearest(w.span).speaker)
    return out


def speaker_for_span(span: TimeSpan, turns: Sequence[SpeakerTurn]) -> str | None:
    """The speaker covering most of ``span`` (nearest turn when none touches it; ``None`` without turns)."""
    if not turns:
        return None
    index = _TurnIndex(turns)
    s = _dominant(index, span)
    return s if s is not None else index.nearest(span).speaker


def split_sentences_at_speakers(
    sentences: Sequence[Sentence],
    word_speakers: Sequence[str | None],
    *,
    turns: Sequence[SpeakerTurn] | None = None,
    min_words: int = 1,
) -> list[tuple[Sentence, str | None]]:
    """Cut sentences where their words change speaker; every piece carries one speaker.

    ``word_speakers`` holds one entry per word of ``sentences`` taken in order (sentence 0's
    words, then sentence 1's, ...), as :func:`assign_speakers` gives for those words. A word with
    speaker ``None`` joins the piece it falls in and never starts a new one. Pieces shorter than
    ``min_words`` words are merged into their longer neighbour (shortest first), so a single word
    misplaced by a turn boundary can be kept from becoming a sentence of its own.

    Pieces are built like the sentence aligner builds sentences: text = the words joined by
    spaces, span = first word's start to last word's end, except that the first piece keeps the
    sentence's start and the last piece its end (a refined sentence span stays refined). A sentence
    that is not cut keeps its text and span. All sentences are re-indexed from 0 in order. A
    sentence without words keeps its speaker from ``turns`` (the one covering most of its span),
    or ``None``.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be at least 1, got {min_words}")
    total = sum(len(s.words) for s in sentences)
    if len(word_speakers) != total:
        raise ValueError(f"{len(word_speakers)} word speakers for {total} words in the sentences")
    out: list[tuple[Sentence, str | None]] = []
    pos = 0
    for s in sentences:
        n = len(s.words)
        speakers = list(word_speakers[pos : pos + n])
        pos += n
        if n == 0:
            sp = speaker_for_span(s.span, turns) if turns else None
            out.append((Sentence(len(out), s.text, s.span, s.words), sp))
            continue
        runs = _merge_short_runs(_runs(speakers), min_words)
        if len(runs) == 1:
            out.append((Sentence(len(out), s.text, s.span, s.words), runs[0][2]))
            continue
        for k, (a, b, sp) in enumerate(runs):
            words = s.words[a:b]
            end = s.end if k == len(runs) - 1 else words[-1].end
            start = s.start if k == 0 else words[0].start
            start = min(start, end)
            out.append((Sentence(len(out), join_words(words), TimeSpan(start, end), tuple(words)), sp))
    return out


def _runs(speakers: Sequence[str | None]) -> list[tuple[int, int, str | None]]:
    """``(first, past-last, speaker)`` runs; ``None`` continues the current run."""
    runs: list[tuple[int, int, str | None]] = []
    start, cur = 0, None
    for i, sp in enumerate(speakers):
        if sp is None or sp == cur:
            continue
        if cur is None:  # the first named speaker claims the leading unnamed words
            cur = sp
            continue
        runs.append((start, i, cur))
        start, cur = i, sp
    runs.append((start, len(speakers), cur))
    return runs


def _merge_short_runs(
    runs: list[tuple[int, int, str | None]], min_words: int
) -> list[tuple[int, int, str | None]]:
    """Merge runs shorter than ``min_words`` into their longer neighbour, shortest first (a flip
    between two runs of one speaker before an edge run), until none is left."""
    runs = list(runs)
    while len(runs) > 1:
        short = [i for i, (a, b, _) in enumerate(runs) if b - a < min_words]
        if not short:
            break
        i = min(short, key=lambda j: (runs[j][1] - runs[j][0], 0 if 0 < j < len(runs) - 1 else 1, j))
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(nbrs, key=lambda j: (runs[j][1] - runs[j][0], -j))
        lo, hi = min(i, j), max(i, j)
        runs[lo : hi + 1] = [(runs[lo][0], runs[hi][1], runs[j][2])]
        merged: list[tuple[int, int, str | None]] = []
        for r in runs:  # neighbours that now share a speaker become one run
            if merged and merged[-1][2] == r[2]:
                merged[-1] = (merged[-1][0], r[1], r[2])
            else:
                merged.append(r)
        runs = merged
    return runs


# ---------------------------------------------------------------------------------------------
# per-speaker summary


@dataclass(frozen=True)
class SegmentEmotion:
    """One stretch of the recording (e.g. its first third) for one speaker."""

    span: TimeSpan
    num_sentences: int
    voice_mean: dict[str, float] | None
    text_mean: dict[str, float] | None

    @property
    def dominant_voice(self) -> str | None:
        return _top(self.voice_mean)

    @property
    def dominant_text(self) -> str | None:
        return _top(self.text_mean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.span.start,
            "end": self.span.end,
            "num_sentences": self.num_sentences,
            "voice_mean": self.voice_mean,
            "text_mean": self.text_mean,
            "dominant_voice": self.dominant_voice,
            "dominant_text": self.dominant_text,
        }


@dataclass(frozen=True)
class SpeakerSummary:
    """How one speaker talked and felt.

    ``talk_time_s``: seconds of speech (their diarisation turns when given, else their sentences'
    spans); ``share``: that over all speakers' talk time. ``voice_mean`` / ``text_mean``: the mean
    over their sentences of the voice / text emotion probabilities (``None`` when no sentence has
    any). ``segments``: the same means over consecutive equal stretches of the recording (thirds by
    default), so a change over time shows. ``voice_change`` / ``text_change``: per label, the mean in
    the last stretch where they spoke minus the mean in the first (empty when they spoke in one).
    """

    speaker: str
    talk_time_s: float
    share: float
    num_sentences: int
    voice_mean: dict[str, float] | None
    text_mean: dict[str, float] | None
    segments: tuple[SegmentEmotion, ...] = field(default=())
    voice_change: dict[str, float] = field(default_factory=dict)
    text_change: dict[str, float] = field(default_factory=dict)

    @property
    def dominant_voice(self) -> str | None:
        """The voice emotion with the highest mean probability."""
        return _top(self.voice_mean)

    @property
    def dominant_text(self) -> str | None:
        """The text emotion with the highest mean probability."""
        return _top(self.text_mean)

    @property
    def dominant_trend(self) -> dict[str, list[str | None]]:
        """The dominant voice and text emotion in each stretch, in time order."""
        return {
            "voice": [s.dominant_voice for s in self.segments],
            "text": [s.dominant_text for s in self.segments],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "talk_time_s": self.talk_time_s,
            "share": self.share,
            "num_sentences": self.num_sentences,
            "voice_mean": self.voice_mean,
            "text_mean": self.text_mean,
            "dominant_voice": self.dominant_voice,
            "dominant_text": self.dominant_text,
            "dominant_trend": self.dominant_trend,
            "voice_change": self.voice_change,
            "text_change": self.text_change,
            "segments": [s.to_dict() for s in self.segments],
        }


def _top(m: Mapping[str, float] | None) -> str | None:
    if not m:
        return None
    return max(m, key=lambda k: m[k])  # first label wins ties (dicts keep insertion order)


def _mean(scores: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    if not scores:
        return None
    labels: list[str] = []
    for s in scores:
        labels.extend(k for k in s if k not in labels)
    return {k: sum(float(s.get(k, 0.0)) for s in scores) / len(scores) for k in labels}


def _change(segments: Sequence[SegmentEmotion], attr: str) -> dict[str, float]:
    present = [getattr(s, attr) for s in segments if getattr(s, attr)]
    if len(present) < 2:
        return {}
    first, last = present[0], present[-1]
    return {k: last.get(k, 0.0) - first.get(k, 0.0) for k in dict.fromkeys([*first, *last])}


def _union_length(spans: Sequence[TimeSpan]) -> float:
    total, cur_s, cur_e = 0.0, -1.0, -1.0
    for sp in sorted(spans, key=lambda x: x.start):
        if sp.start > cur_e:
            total += max(0.0, cur_e - cur_s)
            cur_s, cur_e = sp.start, sp.end
        else:
            cur_e = max(cur_e, sp.end)
    return total + max(0.0, cur_e - cur_s)


def speaker_summary(
    speakers: Sequence[str | None],
    spans: Sequence[TimeSpan],
    voice: Sequence[Mapping[str, float] | None],
    text: Sequence[Mapping[str, float] | None],
    *,
    turns: Sequence[SpeakerTurn] | None = None,
    duration: float | None = None,
    parts: int = 3,
) -> list[SpeakerSummary]:
    """Per-speaker summaries, in order of first appearance (turns first, then sentences).

    One entry per sentence in ``speakers`` / ``spans`` / ``voice`` / ``text`` (the emotion
    probabilities as label → probability; ``None`` where a sentence has none). Sentences whose
    speaker is ``None`` are left out. ``turns`` (the diarisation) gives the talk time and lists
    speakers who have turns but no sentence. The recording is cut into ``parts`` equal stretches
    of ``[0, duration]`` (default: up to the last sentence or turn end) for the trend; a sentence
    belongs to the stretch holding its middle.
    """
    n = len(speakers)
    if not (len(spans) == len(voice) == len(text) == n):
        raise ValueError(
            f"speakers, spans, voice and text must have one entry per sentence "
            f"({n}, {len(spans)}, {len(voice)}, {len(text)})"
        )
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    turns = list(turns or ())
    order: list[str] = []
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        if t.speaker not in order:
            order.append(t.speaker)
    for s in speakers:
        if s is not None and s not in order:
            order.append(s)
    end = duration
    if end is None:
        end = max([sp.end for sp in spans] + [t.end for t in turns] + [0.0])
    bounds = [end * i / parts for i in range(parts + 1)]

    talk: dict[str, float] = {}
    for spk in order:
        own = [t.span for t in turns if t.speaker == spk]
        if not turns:
            own = [spans[i] for i in range(n) if speakers[i] == spk]
        talk[spk] = _union_length(own)
    total_talk = sum(talk.values())

    out = []
    for spk in order:
        idx = [i for i in range(n) if speakers[i] == spk]
        segs = []
        for p in range(parts):
            lo, hi = bounds[p], bounds[p + 1]
            last = p == parts - 1
            inside = [i for i in idx if lo <= spans[i].middle < hi or (last and spans[i].middle >= hi)]
            segs.append(
                SegmentEmotion(
                    TimeSpan(lo, hi),
                    len(inside),
                    _mean([v for i in inside if (v := voice[i])]),
                    _mean([v for i in inside if (v := text[i])]),
                )
            )
        out.append(
            SpeakerSummary(
                speaker=spk,
                talk_time_s=talk[spk],
                share=talk[spk] / total_talk if total_talk > 0 else 0.0,
                num_sentences=len(idx),
                voice_mean=_mean([v for i in idx if (v := voice[i])]),
                text_mean=_mean([v for i in idx if (v := text[i])]),
                segments=tuple(segs),
                voice_change=_change(segs, "voice_mean"),
                text_change=_change(segs, "text_mean"),
            )
        )
    return out
