"""DER and JER with ``pyannote.metrics`` (the field's reference implementation), over our types.

``pyannote.metrics`` is an evaluation dependency (the ``diarization`` and ``dev`` extras); it is
imported only when a metric is computed. Its ``collar`` is the *total* width removed around each
reference boundary (``collar / 2`` on each side), so ``collar=0.25`` forgives ±0.125 s; NIST's
md-eval ``-c 0.25`` corresponds to ``collar=0.5`` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from emoflow.diarization.types import SpeakerTurn
from emoflow.errors import ModelUnavailableError

DEFAULT_COLLAR = 0.25


@dataclass(frozen=True)
class DiarizationScores:
    """DER and JER (fractions, not percent) of one file, and the speaker counts."""

    der: float
    jer: float
    reference_speakers: int
    hypothesis_speakers: int

    @property
    def count_correct(self) -> bool:
        return self.reference_speakers == self.hypothesis_speakers

    def to_dict(self) -> dict[str, Any]:
        return {
            "der": self.der,
            "jer": self.jer,
            "reference_speakers": self.reference_speakers,
            "hypothesis_speakers": self.hypothesis_speakers,
        }


def _pyannote() -> Any:
    try:
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate
    except ImportError as e:
        raise ModelUnavailableError(
            "DER/JER need pyannote.metrics; install it with `pip install 'emoflow[diarization]'`"
        ) from e
    return Annotation, Segment, DiarizationErrorRate, JaccardErrorRate


def to_annotation(turns: Iterable[SpeakerTurn], uri: str = "file") -> Any:
    """Turns as a ``pyannote.core.Annotation``."""
    Annotation, Segment, _, _ = _pyannote()
    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        if t.duration > 0:
            ann[Segment(t.start, t.end), i] = t.speaker
    return ann


class DiarizationEvaluator:
    """Accumulates DER and JER over files (pyannote's totals: errors summed, then divided)."""

    def __init__(self, collar: float = DEFAULT_COLLAR, skip_overlap: bool = False) -> None:
        _, _, DER, JER = _pyannote()
        self.collar = collar
        self._der = DER(collar=collar, skip_overlap=skip_overlap)
        self._jer = JER(collar=collar, skip_overlap=skip_overlap)

    def __call__(
        self,
        reference: Sequence[SpeakerTurn],
        hypothesis: Sequence[SpeakerTurn],
        duration: float,
        uri: str = "file",
    ) -> DiarizationScores:
        """Score one file over ``[0, duration]`` and add it to the totals."""
        _, Segment, _, _ = _pyannote()
        ref, hyp = to_annotation(reference, uri), to_annotation(hypothesis, uri)
        uem = Segment(0.0, duration)
        der = float(self._der(ref, hyp, uem=uem))
        jer = float(self._jer(ref, hyp, uem=uem))
        return DiarizationScores(
            der, jer, len({t.speaker for t in reference}), len({t.speaker for t in hypothesis})
        )

    @property
    def der(self) -> float:
        """DER over every file scored so far."""
        return float(abs(self._der))

    @property
    def jer(self) -> float:
        """JER over every file scored so far (pyannote averages it over speakers)."""
        return float(abs(self._jer))
