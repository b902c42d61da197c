"""Settings of the whole analysis: one dataclass per stage, composed into :class:`PipelineConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from emoflow.asr.base import DEFAULT_ASR_MODEL, AsrConfig
from emoflow.errors import ConfigError
from emoflow.speech.emotion2vec import DEFAULT_AUDIO_MODEL, TimelineConfig
from emoflow.text.embeddings import DEFAULT_ENCODER
from emoflow.text.emotion import DEFAULT_TEXT_MODEL
from emoflow.text.sentences import SentenceConfig
from emoflow.text.sequences import DEFAULT_SEPARATOR, DEFAULT_TOP_K

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EmbeddingConfig:
    """``method``: ``cls`` or ``layers`` (extraction with ``encoder_model``) or ``word2vec``
    (a scheme trained with ``emoflow train-embeddings``, at ``scheme``)."""

    method: str = "cls"
    layers: tuple[int, ...] = (-4, -3, -2, -1)
    weights: tuple[float, ...] | None = None
    scheme: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("cls", "layers", "word2vec"):
            raise ConfigError(f"unknown embedding {self.method!r}; use cls, layers or word2vec:PATH")
        if self.method == "word2vec" and not self.scheme:
            raise ConfigError(
                "the word2vec embedding needs the scheme's directory: --embedding word2vec:PATH"
            )

    @classmethod
    def parse(cls, text: str) -> EmbeddingConfig:
        """From the CLI form: ``cls``, ``layers`` or ``word2vec:PATH``."""
        if text.startswith("word2vec:"):
            return cls("word2vec", scheme=text.split(":", 1)[1])
        return cls(text)


@dataclass(frozen=True)
class PipelineConfig:
    asr_backend: str = "transformers"
    asr_model: str = DEFAULT_ASR_MODEL
    audio_model: str = DEFAULT_AUDIO_MODEL
    text_model: str = DEFAULT_TEXT_MODEL
    encoder_model: str = DEFAULT_ENCODER
    device: str = "auto"
    offline: bool | None = None
    top_k: int = DEFAULT_TOP_K
    separator: str = DEFAULT_SEPARATOR
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    sentences: SentenceConfig = field(default_factory=SentenceConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    fusion_model: str | None = None
    # the longest recording accepted, in seconds of decoded audio (None: no limit)
    max_duration: float | None = None
    # numeric precision of every model: auto (see emoflow.models.resolve_dtype), float32, bfloat16, float16
    dtype: str = "auto"

    def __post_init__(self) -> None:
        from emoflow.audio.io import check_max_duration

        check_max_duration(self.max_duration)
        if self.top_k < 1:
            raise ConfigError(f"top-k must be at least 1, got {self.top_k}")
        if self.asr_backend not in ("transformers", "faster-whisper"):
            raise ConfigError(f"unknown ASR backend {self.asr_backend!r}; use transformers or faster-whisper")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; use {', '.join(DTYPES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
