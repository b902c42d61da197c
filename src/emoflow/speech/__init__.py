"""Audio (speech) emotion: the voice branch.

:func:`make_audio_encoder` builds the stage for whatever ``--audio-model`` holds
(:mod:`~emoflow.speech.detect`): emotion2vec through FunASR (:mod:`~emoflow.speech.emotion2vec`)
or a transformers speech model — an SER classifier or a bare wav2vec2 / HuBERT / WavLM /
data2vec-audio / Whisper encoder (:mod:`~emoflow.speech.transformers_audio`). All of them give
the same contract (:class:`~emoflow.protocols.AudioEmotionModel`) through the model-agnostic
windowing of :mod:`emoflow.inference`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emoflow.config import DEFAULT_AUDIO_LAYERS, AudioLayers
from emoflow.models import ModelSpec
from emoflow.speech.detect import (
    SUPPORTED,
    TRANSFORMERS_TYPES,
    AudioModelInfo,
    audio_provenance_options,
    inspect_audio_model,
)

if TYPE_CHECKING:
    from emoflow.protocols import AudioEmotionModel

__all__ = [
    "SUPPORTED",
    "TRANSFORMERS_TYPES",
    "AudioModelInfo",
    "audio_provenance_options",
    "inspect_audio_model",
    "make_audio_encoder",
]


def make_audio_encoder(
    spec: ModelSpec | str,
    *,
    layers: str | AudioLayers = DEFAULT_AUDIO_LAYERS,
    **options: Any,
) -> AudioEmotionModel:
    """The voice stage for ``spec``: emotion2vec or a transformers speech model, recognised by
    what the folder (or hub repository) holds. ``layers``: ``--audio-layers`` (checked against
    the model before its weights load: :class:`~emoflow.errors.ConfigError`); ``options``:
    ``batch_size``, ``batch_seconds``, ``max_input_s``. A folder emoflow cannot read is a
    :class:`~emoflow.errors.ModelError` / :class:`~emoflow.errors.ModelUnavailableError` naming
    what it holds and what is supported."""
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    info = inspect_audio_model(spec, layers)
    if info.kind == "emotion2vec":
        from emoflow.speech.emotion2vec import Emotion2vecEncoder

        return Emotion2vecEncoder(spec, **options)
    from emoflow.speech.transformers_audio import TransformersAudioEncoder

    return TransformersAudioEncoder(spec, layers=layers, info=info, **options)
