"""A result as flat tables (pandas): one row per sentence, one row per timeline window.

The tables are flattened from the types' own serialisers (:meth:`Sentence.to_dict`,
:meth:`EmotionScores.to_dict`, :meth:`Timeline.to_dict`), so a field is named in one place.
Scores are columns ``text_<label>`` / ``audio_<label>`` in the model's label order. A voice
encoder without a classification head gives no voice scores: ``audio_top`` is then an empty cell
and there are no ``audio_<label>`` columns. ``speaker`` is always a column (empty when the
recording was not diarised); :func:`speakers_table` has one row per speaker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emoflow.diarization import SpeakerSummary
    from emoflow.results import Result, SentenceResult
    from emoflow.types import EmotionScores

# the sentence fields the sentences command's CSV takes from Sentence.to_dict (words left out)
SENTENCE_FIELDS = ("index", "start", "end", "text")
# ... and a result's sentences.csv (with the speaker: empty when not diarised)
ROW_FIELDS = ("index", "start", "end", "speaker", "text")
SENTENCE_COLUMNS = (*ROW_FIELDS, "sequence", "text_top", "audio_top")
SPEAKER_COLUMNS = (
    "speaker",
    "talk_time_s",
    "share",
    "num_sentences",
    "dominant_voice",
    "dominant_text",
    "voice_trend",
    "text_trend",
)


def top(scores: EmotionScores | None) -> str | None:
    """The top label, or ``None`` (an empty cell) for no scores (an encoder without a head)."""
    return scores.top if scores is not None and scores.labels else None


def _score_columns(prefix: str, scores: EmotionScores) -> dict[str, float]:
    d = scores.to_dict(sort=False)  # the model's label order: the same columns on every row
    return {f"{prefix}_{label}": score for label, score in zip(d["labels"], d["scores"], strict=True)}


def sentence_row(s: SentenceResult) -> dict[str, Any]:
    """One sentence as a flat row: its fields, the emotion sequence, each modality's top emotion
    (``fused_top`` too when fused), then every score."""
    d = s.sentence.to_dict()
    row: dict[str, Any] = {k: d[k] for k in ROW_FIELDS}
    row.update(sequence=s.sequence, text_top=top(s.text_emotion), audio_top=top(s.audio_emotion))
    if s.fused is not None:
        row["fused_top"] = top(s.fused)
    row.update(_score_columns("text", s.text_emotion))
    row.update(_score_columns("audio", s.audio_emotion))
    return row


def sentences_table(result: Result) -> Any:
    """A pandas DataFrame: one row per sentence (:func:`sentence_row`)."""
    import pandas as pd

    rows = [sentence_row(s) for s in result.sentences]
    return pd.DataFrame(rows, columns=None if rows else list(SENTENCE_COLUMNS))


def timeline_table(result: Result) -> Any:
    """A pandas DataFrame: one row per timeline window, ``start``, ``end`` and a column per label."""
    import pandas as pd

    d = result.timeline.to_dict()
    return pd.DataFrame(
        [[w["start"], w["end"], *w["scores"]] for w in d["windows"]],
        columns=["start", "end", *d["labels"]],
    )


def _trend(labels: list[str | None]) -> str:
    """The dominant emotion of each stretch of the recording, in order (``-``: silent there)."""
    return "->".join(x or "-" for x in labels)


def speaker_row(s: SpeakerSummary) -> dict[str, Any]:
    """One speaker as a flat row: talk time, share, sentences, dominant voice and text emotion,
    their trend over the recording's stretches, then the mean of each score
    (``voice_<label>``, ``text_<label>``; empty where the speaker has none)."""
    trend = s.dominant_trend
    row: dict[str, Any] = {
        "speaker": s.speaker,
        "talk_time_s": s.talk_time_s,
        "share": s.share,
        "num_sentences": s.num_sentences,
        "dominant_voice": s.dominant_voice,
        "dominant_text": s.dominant_text,
        "voice_trend": _trend(trend["voice"]),
        "text_trend": _trend(trend["text"]),
    }
    row.update({f"voice_{k}": v for k, v in (s.voice_mean or {}).items()})
    row.update({f"text_{k}": v for k, v in (s.text_mean or {}).items()})
    return row


def speakers_table(result: Result) -> Any:
    """A pandas DataFrame: one row per speaker (:func:`speaker_row`), in order of first appearance."""
    import pandas as pd

    rows = [speaker_row(s) for s in result.speakers]
    return pd.DataFrame(rows, columns=None if rows else list(SPEAKER_COLUMNS))


def write_tables(result: Result, sentences_csv: Any, timeline_csv: Any, speakers_csv: Any = None) -> None:
    """``sentences.csv`` and ``timeline.csv`` (scores and times with 4 decimals); with
    ``speakers_csv`` and a diarised result, ``speakers.csv`` too."""
    sentences_table(result).to_csv(sentences_csv, index=False, float_format="%.4f")
    timeline_table(result).to_csv(timeline_csv, index=False, float_format="%.4f")
    if speakers_csv is not None and result.diarization is not None:
        speakers_table(result).to_csv(speakers_csv, index=False, float_format="%.4f")
