"""Transcription: ASR backends and transcript files, all producing a :class:`~emoflow.types.Transcript`.

:func:`make_transcriber` builds the transcriber for a backend name; :func:`asr_provenance` says
which weights and settings it would run without building it. The backends (imported on use,
so reading a transcript file needs neither transformers nor faster-whisper):
:mod:`~emoflow.asr.whisper_hf` (transformers) and :mod:`~emoflow.asr.whisper_ct2` (faster-whisper),
both on :class:`~emoflow.asr.base.TranscriberStage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emoflow.asr.base import BACKENDS, asr_provenance, backend_name

if TYPE_CHECKING:
    from emoflow.config import AsrConfig
    from emoflow.models import ModelSpec
    from emoflow.protocols import SpeechRegions, Transcriber

__all__ = ["BACKENDS", "asr_provenance", "backend_name", "make_transcriber"]


def make_transcriber(
    backend: str,
    spec: ModelSpec | str,
    config: AsrConfig | None = None,
    *,
    vad: SpeechRegions | None = None,
) -> Transcriber:
    """The transcriber for a backend name (``transformers``, or ``faster-whisper`` / ``ct2``).

    ``vad``: the speech detector used when a call gives no regions (e.g. the pipeline's own,
    so one Silero model serves both); ``None`` builds one on first use.
    """
    name = backend_name(backend)
    if name == "transformers":
        from emoflow.asr.whisper_hf import HFWhisperTranscriber

        return HFWhisperTranscriber(spec, config, vad=vad)
    from emoflow.asr.whisper_ct2 import CT2WhisperTranscriber

    return CT2WhisperTranscriber(spec, config, vad=vad)
