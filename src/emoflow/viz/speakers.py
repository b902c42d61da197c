"""Who spoke when, as the plots and the report show it: one lane per speaker.

:func:`speaker_view` gathers from a diarised :class:`~emoflow.results.Result` the speakers (in
order of first appearance), their turns, each sentence's speaker and the per-speaker summaries
(:class:`~emoflow.diarization.speakers.SpeakerSummary`); ``None`` for a result without
diarisation, whose plots and report stay as they were. Each speaker has one colour
(:func:`speaker_colors`), distinct from the emotions' colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emoflow.diarization import SpeakerSummary, SpeakerTurn
    from emoflow.results import Result

# dark, saturated hues that none of the emotion palette's (Okabe-Ito) colours is close to, so a
# speaker's turn bar never reads as an emotion; repeated past eight speakers
SPEAKER_PALETTE = (
    "#1F3B73",  # navy
    "#8E2C6E",  # plum
    "#2F6B2F",  # forest
    "#8A5A00",  # bronze
    "#4B3C8F",  # indigo
    "#00606A",  # teal
    "#A23B2A",  # brick
    "#4D4D4D",  # graphite
)


def speaker_colors(speakers: Sequence[str]) -> dict[str, str]:
    """One colour per speaker, in the given (first-appearance) order."""
    return {s: SPEAKER_PALETTE[i % len(SPEAKER_PALETTE)] for i, s in enumerate(speakers)}


@dataclass(frozen=True)
class SpeakerView:
    """A diarised result's speakers, as drawn: ``sentence_speakers[i]`` is sentence ``i``'s."""

    speakers: tuple[str, ...]
    turns: tuple[SpeakerTurn, ...]
    sentence_speakers: tuple[str | None, ...]
    summaries: tuple[SpeakerSummary, ...]

    @property
    def colors(self) -> dict[str, str]:
        return speaker_colors(self.speakers)

    def sentences_of(self, speaker: str) -> list[int]:
        return [i for i, s in enumerate(self.sentence_speakers) if s == speaker]

    def summary_rows(self) -> list[dict[str, Any]]:
        """The summaries' own records (``SpeakerSummary.to_dict``), one per speaker in order."""
        return [s.to_dict() for s in self.summaries]


def speaker_view(result: Result) -> SpeakerView | None:
    """The speakers of a diarised result, or ``None`` without diarisation (or without speakers:
    a silent recording's diarisation has no turns).

    A sentence's speaker is its own ``speaker``; a sentence without one (a result written
    before sentences carried speakers) gets the speaker whose turns cover most of its span.
    The summaries are the result's ``speakers``, or computed from its sentences when it has none.
    """
    from emoflow.diarization import speaker_for_span

    diarization = result.diarization
    sentence_speakers: list[str | None] = [s.sentence.speaker for s in result.sentences]
    if diarization is None and not any(sentence_speakers):
        return None
    turns: tuple[SpeakerTurn, ...] = tuple(diarization.turns) if diarization is not None else ()
    if turns:
        sentence_speakers = [
            sp if sp is not None else speaker_for_span(s.sentence.span, turns)
            for sp, s in zip(sentence_speakers, result.sentences, strict=True)
        ]
    order: list[str] = list(diarization.speakers) if diarization is not None else []
    order += [s for s in dict.fromkeys(sentence_speakers) if s is not None and s not in order]
    if not order:  # diarised, but nobody spoke (silence): nothing to draw a lane for
        return None
    summaries = tuple(result.speakers)
    if not summaries or {s.speaker for s in summaries} != set(order):
        summaries = tuple(_summaries(result, sentence_speakers, turns))
    by_name = {s.speaker: s for s in summaries}
    return SpeakerView(
        tuple(order), turns, tuple(sentence_speakers), tuple(by_name[s] for s in order if s in by_name)
    )


def _summaries(
    result: Result, sentence_speakers: Sequence[str | None], turns: Sequence[SpeakerTurn]
) -> list[SpeakerSummary]:
    from emoflow.diarization import speaker_summary

    return speaker_summary(
        sentence_speakers,
        [s.sentence.span for s in result.sentences],
        [s.audio_emotion.as_mapping() or None for s in result.sentences],
        [s.text_emotion.as_mapping() or None for s in result.sentences],
        turns=turns,
        duration=result.source.duration_s,
    )
