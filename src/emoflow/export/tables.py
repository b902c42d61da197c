"""A result as flat tables (pandas): one row per sentence, one row per timeline window.

The tables are flattened from the types' own serialisers (:meth:`Sentence.to_dict`,
:meth:`EmotionScores.to_dict`, :meth:`Timeline.to_dict`), so a field is named in one place.
Scores are columns ``text_<label>`` / ``audio_<label>`` in the model's label order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emoflow.results import Result, SentenceResult
    from emoflow.types import EmotionScores

# the sentence fields a table row takes from Sentence.to_dict (the words are left out)
SENTENCE_FIELDS = ("index", "start", "end", "text")
SENTENCE_COLUMNS = (*SENTENCE_FIELDS, "sequence", "text_top", "audio_top")


def _score_columns(prefix: str, scores: EmotionScores) -> dict[str, float]:
    d = scores.to_dict(sort=False)  # the model's label order: the same columns on every row
    return {f"{prefix}_{label}": score for label, score in zip(d["labels"], d["scores"], strict=True)}


def sentence_row(s: SentenceResult) -> dict[str, Any]:
    """One sentence as a flat row: its fields, the emotion sequence, each modality's top emotion
    (``fused_top`` too when fused), then every score."""
    d = s.sentence.to_dict()
    row: dict[str, Any] = {k: d[k] for k in SENTENCE_FIELDS}
    row.update(sequence=s.sequence, text_top=s.text_emotion.top, audio_top=s.audio_emotion.top)
    if s.fused is not None:
        row["fused_top"] = s.fused.top
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


def write_tables(result: Result, sentences_csv: Any, timeline_csv: Any) -> None:
    """``sentences.csv`` and ``timeline.csv`` (scores and times with 4 decimals)."""
    sentences_table(result).to_csv(sentences_csv, index=False, float_format="%.4f")
    timeline_table(result).to_csv(timeline_csv, index=False, float_format="%.4f")
