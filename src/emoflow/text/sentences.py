"""Sentences with timings from a word-level transcript.

1. The transcript's text is the words joined by spaces. A sentence splitter (pysbd by
   default: rule based, offline, handles ``Dr.``, decimals and ellipses; nltk punkt when
   its data is installed) cuts that text into sentences.
2. Sentences are aligned to words by character offsets in one linear pass: counting
   non-space characters, each word goes to the sentence that holds its first character.
   Every word belongs to exactly one sentence, in order; a sentence's text is its words
   joined; its span runs from its first word's start to its last word's end.
3. Text without sentence punctuation (lowercase ASR output, CTC models) is split at pauses
   instead; any sentence longer than ``max_sentence_s`` is split at its longest pauses.
4. With the audio, each sentence's start and end are refined to the speech inside it,
   found by a voice activity detector: Whisper's sentence-final words absorb the pause
   after them, and its first word often starts in the silence before. A sentence whose
   span holds no speech is dropped (Whisper hallucinates text on silence).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from emoflow.audio.io import Audio
from emoflow.config import SentenceConfig
from emoflow.errors import ConfigError, RepairWarning
from emoflow.types import Sentence, TimeSpan, Transcript, Word, join_words

log = logging.getLogger(__name__)

TERMINAL_RE = re.compile(r"[.!?…。！？]")


def has_sentence_punctuation(text: str) -> bool:
    return bool(TERMINAL_RE.search(text))


def split_text(text: str, splitter: Literal["pysbd", "nltk"] = "pysbd", language: str = "en") -> list[str]:
    """Sentence strings of ``text``, their characters unchanged (whitespace aside)."""
    if splitter == "nltk":
        try:
            import nltk

            return list(nltk.sent_tokenize(text))
        except (ImportError, LookupError) as e:
            raise ConfigError(
                "the nltk splitter needs `pip install nltk` and its punkt data "
                "(`python -m nltk.downloader punkt_tab`); or use --splitter pysbd"
            ) from e
    import pysbd

    return list(pysbd.Segmenter(language=language, clean=False).segment(text))


def _nonspace_len(s: str) -> int:
    return sum(1 for ch in s if not ch.isspace())


def _make_sentence(index: int, words: Sequence[Word]) -> Sentence:
    return Sentence(index, join_words(words), TimeSpan(words[0].start, words[-1].end), tuple(words))


def align_sentences(words: Sequence[Word], sentence_texts: Sequence[str]) -> list[Sentence]:
    """Assign words to sentences by character offsets, in one linear pass.

    Offsets count non-space characters, so differences in whitespace between the
    splitter's output and the joined words do not matter. A word goes to the sentence
    holding its first character; sentences left without words are skipped.
    """
    if not words:
        return []
    bounds, total = [], 0
    for s in sentence_texts:
        total += _nonspace_len(s)
        bounds.append(total)
    if not bounds or bounds[-1] != sum(_nonspace_len(w.text) for w in words):
        log.debug(
            "splitter output differs from the words' characters; trailing words go to the last sentence"
        )
    groups: list[list[Word]] = []
    j, offset, current = 0, 0, -1
    for w in words:
        while j < len(bounds) - 1 and offset >= bounds[j]:
            j += 1
        if j != current:
            groups.append([])
            current = j
        groups[-1].append(w)
        offset += _nonspace_len(w.text)
    return [_make_sentence(i, g) for i, g in enumerate(groups)]


ABBREVIATIONS = frozenset(
    [
        "prof",
        "inc",
        "ltd",
        "etc",
        "vs",
        "jr",
        "sr",
        "st",
        "mt",
        "gen",
        "col",
        "capt",
        "sgt",
        "dept",
        "univ",
        "approx",
    ]
)
BLOCK_WORDS = 200


def _is_safe_cut(word: str, next_word: str) -> bool:
    """A sentence end no splitter would dispute: terminal punctuation on a word that is not an
    abbreviation, followed by a capitalised word."""
    if not next_word[:1].isupper():
        return False
    if word.endswith(("!", "?", "…")):
        return True
    if not word.endswith("."):
        return False
    stem = word.rstrip(".").lower()
    return len(stem) >= 4 and "." not in stem and stem.isalpha() and stem not in ABBREVIATIONS


def _blocks(words: Sequence[Word], size: int = BLOCK_WORDS) -> list[Sequence[Word]]:
    """Cut long transcripts into blocks of about ``size`` words at unambiguous sentence ends.

    pysbd's time grows faster than linearly with text length; splitting blocks of bounded
    size keeps the whole step linear without changing where sentences end.
    """
    out, start = [], 0
    for i in range(size, len(words) - 1):
        if i - start >= size and _is_safe_cut(words[i].text, words[i + 1].text):
            out.append(words[start : i + 1])
            start = i + 1
    out.append(words[start:])
    return out


def split_at_pauses(words: Sequence[Word], pause_s: float) -> list[list[Word]]:
    """Word groups separated by gaps of at least ``pause_s``."""
    groups: list[list[Word]] = []
    for w in words:
        if not groups or w.start - groups[-1][-1].end >= pause_s:
            groups.append([w])
        else:
            groups[-1].append(w)
    return groups


def _split_long(words: list[Word], max_s: float) -> list[list[Word]]:
    """Split a word run longer than ``max_s`` at its longest pause, recursively."""
    if len(words) < 2 or words[-1].end - words[0].start <= max_s:
        return [words]
    gaps = [(words[i + 1].start - words[i].end, i) for i in range(len(words) - 1)]
    # the longest gap; ties broken toward the middle so the halves stay balanced
    mid = (len(words) - 1) / 2
    _, cut = max(gaps, key=lambda g: (g[0], -abs(g[1] - mid)))
    return _split_long(words[: cut + 1], max_s) + _split_long(words[cut + 1 :], max_s)


def refine_boundaries(
    sentences: Sequence[Sentence],
    speech: Sequence[TimeSpan],
    *,
    spill_s: float = 0.3,
    max_extend_s: float = 0.6,
    duration: float | None = None,
) -> tuple[list[Sentence], int]:
    """Move each sentence's start and end to the speech inside it; drop sentences without speech.

    Each sentence owns a tile of the timeline: from the midpoint of the pause before it to
    the midpoint of the pause after it, and no more than ``max_extend_s`` beyond its words.
    Speech regions are cut at tile edges; a cut-off piece shorter than ``spill_s`` goes to
    the neighbouring sentence that holds the rest of the region. Linear in sentences plus
    regions. Returns the refined sentences (re-indexed) and how many were dropped.
    """
    n = len(sentences)
    if n == 0:
        return [], 0
    end_limit = duration if duration is not None else float("inf")
    tiles = []
    for i, s in enumerate(sentences):
        lo = s.start - max_extend_s if i == 0 else (sentences[i - 1].end + s.start) / 2
        hi = s.end + max_extend_s if i == n - 1 else (s.end + sentences[i + 1].start) / 2
        tiles.append((max(0.0, lo, s.start - max_extend_s), min(end_limit, hi, s.end + max_extend_s)))
    owned: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    first = 0  # first tile that can still overlap the next region (regions are in time order)
    for r in speech:
        while first < n and tiles[first][1] <= r.start:
            first += 1
        pieces: list[list[float]] = []  # [sentence index, start, end]
        k = first
        while k < n and tiles[k][0] < r.end:
            a, b = max(r.start, tiles[k][0]), min(r.end, tiles[k][1])
            if b > a:
                pieces.append([float(k), a, b])
            k += 1
        if not pieces:
            continue
        if len(pieces) > 1:
            keep = [p for p in pieces if p[2] - p[1] >= spill_s] or [max(pieces, key=lambda p: p[2] - p[1])]
            # give short end pieces to their kept neighbour: the region's edges stay speech
            if pieces[0] not in keep:
                keep[0][1] = min(keep[0][1], pieces[0][1])
            if pieces[-1] not in keep:
                keep[-1][2] = max(keep[-1][2], pieces[-1][2])
            pieces = keep
        for kf, a, b in pieces:
            owned[int(kf)].append((a, b))
    out: list[Sentence] = []
    dropped = 0
    for s, parts in zip(sentences, owned, strict=True):
        if not parts:
            dropped += 1
            continue
        span = TimeSpan(round(min(p[0] for p in parts), 4), round(max(p[1] for p in parts), 4))
        out.append(replace(s, index=len(out), span=span))
    return out, dropped


class SentenceSegmenter:
    """Stage: transcript (and optionally audio) → timed sentences.

    ``vad`` is a :class:`~emoflow.audio.vad.SpeechDetector`; it is created on first use
    when refinement is on and audio is given, and reused afterwards.
    """

    def __init__(
        self, config: SentenceConfig | None = None, vad: Callable[[Audio], list[TimeSpan]] | None = None
    ) -> None:
        self.config = config or SentenceConfig()
        self._vad = vad

    @property
    def vad(self) -> Callable[[Audio], list[TimeSpan]]:
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    def split(self, transcript: Transcript) -> list[Sentence]:
        """Sentences aligned to words, before refinement against audio."""
        words = list(transcript.words)
        if not words:
            return []
        c = self.config
        text = join_words(words)
        splitter = c.splitter
        if splitter == "auto":
            splitter = "pysbd" if has_sentence_punctuation(text) else "pauses"
            if splitter == "pauses":
                log.info(
                    "no sentence punctuation in the transcript: splitting at pauses >= %.2f s", c.pause_s
                )
        if splitter == "pauses":
            groups = split_at_pauses(words, c.pause_s)
        else:
            groups = []
            for block in _blocks(words):
                block_text = join_words(block)
                groups += [
                    list(s.words)
                    for s in align_sentences(block, split_text(block_text, splitter, c.language))
                ]
        final = [part for g in groups for part in _split_long(g, c.max_sentence_s)]
        return [_make_sentence(i, g) for i, g in enumerate(final)]

    def __call__(
        self, transcript: Transcript, audio: Audio | None = None, speech: Sequence[TimeSpan] | None = None
    ) -> list[Sentence]:
        """Timed sentences; refined to the speech when ``audio`` (or precomputed ``speech``) is given."""
        sentences = self.split(transcript)
        if not self.config.refine or (audio is None and speech is None) or not sentences:
            return sentences
        if speech is None:
            assert audio is not None
            speech = self.vad(audio)
        refined, dropped = refine_boundaries(
            sentences,
            speech,
            spill_s=self.config.spill_s,
            max_extend_s=self.config.max_extend_s,
            duration=audio.duration if audio is not None else None,
        )
        if dropped:
            warnings.warn(
                f"{dropped} sentence(s) dropped: no speech in their time span "
                "(ASR text on silence is usually hallucinated)",
                RepairWarning,
                stacklevel=2,
            )
        return refined
