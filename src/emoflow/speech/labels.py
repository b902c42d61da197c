"""One table from speech-emotion checkpoints' label names to emoflow's voice names.

emoflow's voice side names emotions as emotion2vec does (``angry``, ``happy``, ``neutral``,
``sad`` ...; :mod:`emoflow.viz.colors` maps them to the canonical emotions the text side shares).
SER checkpoints use their corpus' names: ``superb/hubert-large-superb-er`` says ``neu``/``hap``/
``ang``/``sad`` (IEMOCAP's), others plain words. Names the table lacks are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# SER checkpoints' label names → emoflow's voice names (emotion2vec's); unknown names are kept.
SER_LABELS: Final = {
    "neu": "neutral",
    "neutral": "neutral",
    "hap": "happy",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "ang": "angry",
    "angry": "angry",
    "anger": "angry",
    "sad": "sad",
    "sadness": "sad",
    "fea": "fearful",
    "fear": "fearful",
    "fearful": "fearful",
    "dis": "disgusted",
    "disgust": "disgusted",
    "disgusted": "disgusted",
    "sur": "surprised",
    "surprise": "surprised",
    "surprised": "surprised",
    "fru": "frustrated",
    "frustrated": "frustrated",
    "frustration": "frustrated",
    "exc": "excited",
    "excited": "excited",
    "cal": "calm",
    "calm": "calm",
    "oth": "other",
    "other": "other",
    "unk": "unknown",
    "unknown": "unknown",
    "<unk>": "unknown",
}


def voice_labels(names: Sequence[str]) -> tuple[str, ...]:
    """A head's labels in emoflow's voice names (:data:`SER_LABELS`, any case; ``zh/en`` forms
    read by their last part); a name the table lacks, or one that would repeat another's
    mapped name, is kept as it is."""
    mapped = [SER_LABELS.get(n.split("/")[-1].strip().lower(), n) for n in names]
    return tuple(m if mapped.count(m) == 1 else n for n, m in zip(names, mapped, strict=True))
