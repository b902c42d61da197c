"""Speaker diarisation: who spoke when, and which speaker said each word and sentence.

* :mod:`~emoflow.diarization.types`: :class:`SpeakerTurn`, :class:`Diarization` (RTTM in and out).
* :mod:`~emoflow.diarization.base`: the :class:`Diarizer` protocol, :func:`check_speaker_count`.
* Backends: :class:`~emoflow.diarization.offline.OfflineDiarizer` (``ge2e``: Silero VAD + the
  GE2E encoder shipped in ``resemblyzer`` + clustering; no hub, no token) and
  :class:`~emoflow.diarization.pyannote_backend.PyannoteDiarizer` (``pyannote``: pyannote.audio's
  pretrained pipeline). :func:`make_diarizer` builds one by name.
* :mod:`~emoflow.diarization.speakers`: :func:`assign_speakers`, :func:`split_sentences_at_speakers`,
  :func:`speaker_summary`.
* :mod:`~emoflow.diarization.metrics`: DER / JER through ``pyannote.metrics``.

Backends import their heavy dependencies only when built.
"""

from __future__ import annotations

from typing import Any

from emoflow.diarization.base import DEFAULT_MAX_SPEAKERS, Diarizer, SpeakerCount, check_speaker_count
from emoflow.diarization.speakers import (
    SegmentEmotion,
    SpeakerSummary,
    assign_speakers,
    speaker_for_span,
    speaker_summary,
    split_sentences_at_speakers,
)
from emoflow.diarization.types import (
    Diarization,
    SpeakerTurn,
    relabel_by_first_appearance,
    rttm_to_turns,
    speaker_label,
    turns_to_rttm,
)
from emoflow.errors import ConfigError

BACKENDS = ("ge2e", "pyannote")
DEFAULT_BACKEND = "ge2e"


def make_diarizer(backend: str = DEFAULT_BACKEND, **kwargs: Any) -> Diarizer:
    """A diarizer by backend name: ``ge2e`` (alias ``offline``) or ``pyannote``.

    ``kwargs`` go to the backend's constructor (``OfflineDiarizer(config=, weights=, device=,
    vad=)``, ``PyannoteDiarizer(model=, revision=, token=, device=, offline=, pipeline=)``).
    """
    name = backend.strip().lower()
    if name in ("ge2e", "offline", "resemblyzer"):
        from emoflow.diarization.offline import OfflineDiarizer

        return OfflineDiarizer(**kwargs)
    if name == "pyannote":
        from emoflow.diarization.pyannote_backend import PyannoteDiarizer

        return PyannoteDiarizer(**kwargs)
    raise ConfigError(f"unknown diarisation backend {backend!r}; use one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_MAX_SPEAKERS",
    "Diarization",
    "Diarizer",
    "SegmentEmotion",
    "SpeakerCount",
    "SpeakerSummary",
    "SpeakerTurn",
    "assign_speakers",
    "check_speaker_count",
    "make_diarizer",
    "relabel_by_first_appearance",
    "rttm_to_turns",
    "speaker_for_span",
    "speaker_label",
    "speaker_summary",
    "split_sentences_at_speakers",
    "turns_to_rttm",
]
