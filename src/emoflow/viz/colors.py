"""One colour per emotion, shared by both label sets, every plot and the report.

emotion2vec says ``angry``/``happy``/``sad``..., the text classifier ``anger``/``joy``/
``sadness``...: both map to one canonical emotion, so "sad voice" and "sad words" have
the same colour everywhere.
"""

from __future__ import annotations

CANONICAL = {
    "angry": "anger",
    "anger": "anger",
    "disgusted": "disgust",
    "disgust": "disgust",
    "fearful": "fear",
    "fear": "fear",
    "happy": "joy",
    "joy": "joy",
    "neutral": "neutral",
    "sad": "sadness",
    "sadness": "sadness",
    "surprised": "surprise",
    "surprise": "surprise",
    "other": "other",
    "unknown": "unknown",
}
# colour-blind-aware (Okabe-Ito based) palette
PALETTE = {
    "anger": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "joy": "#E69F00",
    "neutral": "#999999",
    "sadness": "#0072B2",
    "surprise": "#56B4E9",
    "other": "#8C6D31",
    "unknown": "#C7C7C7",
}


def color(label: str) -> str:
    return PALETTE.get(CANONICAL.get(label.lower(), label.lower()), "#444444")
