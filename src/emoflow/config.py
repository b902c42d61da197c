"""Settings of the whole analysis: one dataclass per stage, composed into :class:`PipelineConfig`."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from emoflow.errors import ConfigError

log = logging.getLogger(__name__)

# ---- default models and settings: the one place they are written ----------------------------
DEFAULT_ASR_MODEL = "nyrahealth/CrisperWhisper"
DEFAULT_AUDIO_MODEL = "emotion2vec/emotion2vec_plus_large"
DEFAULT_TEXT_MODEL = "j-hartmann/emotion-english-distilroberta-base"
DEFAULT_ENCODER = "distilbert/distilbert-base-uncased"
DEFAULT_TOP_K = 3
DEFAULT_SEPARATOR = "__"
AsrBackend = Literal["transformers", "faster-whisper"]
Splitter = Literal["auto", "pysbd", "nltk", "pauses"]
TimelineMode = Literal["exact", "pooled"]
DiarizerBackend = Literal["ge2e", "pyannote"]  # emoflow.diarization.BACKENDS
DEFAULT_DIARIZER = "ge2e"


@dataclass(frozen=True)
class AsrConfig:
    """``language``: ISO code, or ``None`` to let a multilingual model detect it.
    ``pause_adjust``: CrisperWhisper's pause rule; ``None`` applies it to CrisperWhisper models only.
    ``max_segment_s``: speech regions are grouped into pieces of at most this length.
    ``beam_size``: 1 is greedy decoding."""

    language: str | None = "en"
    pause_adjust: bool | None = None
    drop_fillers: bool = False
    max_segment_s: float = 28.0
    max_gap_s: float = 2.0
    batch_size: int = 1  # pieces per decoding call (word timestamps keep no attention maps)
    beam_size: int = 1


@dataclass(frozen=True)
class SentenceConfig:
    """How sentences are found and timed.

    ``splitter``: ``auto`` (pysbd, or pauses when the text has no sentence punctuation),
    ``pysbd``, ``nltk`` (needs punkt data installed) or ``pauses``.
    ``pause_s``: a gap of at least this long ends a sentence in pause splitting.
    ``max_sentence_s``: longer sentences are split at their longest internal pause.
    ``spill_s``: a speech region crossing a sentence boundary with less than this on one
    side belongs wholly to the other side (word times are imprecise by about this much).
    ``max_extend_s``: how far refinement may move a boundary outside the words' own span.
    """

    splitter: Splitter = "auto"
    language: str = "en"
    pause_s: float = 0.7
    max_sentence_s: float = 30.0
    refine: bool = True
    spill_s: float = 0.3
    max_extend_s: float = 0.6

    def __post_init__(self) -> None:
        if self.splitter not in get_args(Splitter):
            raise ConfigError(f"unknown sentence splitter {self.splitter!r}; use auto, pysbd, nltk or pauses")
        if self.pause_s <= 0 or self.max_sentence_s <= 0:
            raise ConfigError("pause_s and max_sentence_s must be positive")


# Bounds of the timeline settings: a window long enough for emotion2vec's first frame and
# a hop that keeps the window count (and so time and memory) proportionate to the audio.
MIN_WINDOW_S = 0.1
MAX_WINDOW_S = 30.0
MIN_HOP_S = 0.05
MAX_HOP_S = 30.0
MAX_TIMELINE_WINDOWS = 50_000  # 13.9 h at the default 1 s hop; ~200 MB of 1024-d embeddings


def _seconds(value: Any, what: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{what} must be between {low:g} and {high:g} s, got {value}")


@dataclass(frozen=True)
class TimelineConfig:
    """The sliding-window timeline. Bounds (seconds): window ``MIN_WINDOW_S``..``MAX_WINDOW_S``
    (and at most ``chunk_s``), hop ``MIN_HOP_S``..``MAX_HOP_S``; a recording may give at most
    ``MAX_TIMELINE_WINDOWS`` windows (:meth:`check_duration`)."""

    window_s: float = 3.0
    hop_s: float = 1.0
    mode: TimelineMode = "exact"
    chunk_s: float = 8.0
    context_s: float = 0.25

    def __post_init__(self) -> None:
        _seconds(self.window_s, "the timeline window", MIN_WINDOW_S, MAX_WINDOW_S)
        _seconds(self.hop_s, "the timeline hop", MIN_HOP_S, MAX_HOP_S)
        _seconds(self.chunk_s, "the timeline chunk", MIN_WINDOW_S, 30.0)
        _seconds(self.context_s, "the timeline context", 0.0, 30.0)
        if self.hop_s > self.window_s:
            log.warning(
                "hop %.2f s is longer than window %.2f s: parts of the audio are skipped",
                self.hop_s,
                self.window_s,
            )
        if self.mode not in get_args(TimelineMode):
            raise ConfigError(f"unknown timeline mode {self.mode!r}; use exact or pooled")
        if self.chunk_s < self.window_s:
            raise ConfigError(
                f"the timeline window ({self.window_s:g} s) is longer than its chunk "
                f"({self.chunk_s:g} s); use a window of at most {self.chunk_s:g} s"
            )

    def window_count(self, duration: float) -> int:
        """About how many windows a recording of ``duration`` seconds gives (at least 1)."""
        if not math.isfinite(duration) or duration <= self.window_s:
            return 1 if math.isfinite(duration) else MAX_TIMELINE_WINDOWS + 1
        return math.ceil((duration - self.window_s) / self.hop_s) + 1

    def check_duration(self, duration: float, name: str = "the recording") -> None:
        """:class:`ConfigError` when a recording this long gives more than ``MAX_TIMELINE_WINDOWS``."""
        n = self.window_count(duration)
        if n > MAX_TIMELINE_WINDOWS:
            raise ConfigError(
                f"{name}: {duration:.0f} s of audio at a {self.hop_s:g} s hop gives {n} timeline "
                f"windows, more than {MAX_TIMELINE_WINDOWS}; use a longer hop (--hop "
                f"{math.ceil(duration / MAX_TIMELINE_WINDOWS * 100) / 100:g} or more)"
            )


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


AudioLayerMode = Literal["last", "mean", "all", "layers"]
DEFAULT_AUDIO_LAYERS = "last"


@dataclass(frozen=True)
class AudioLayers:
    """Which hidden states of a transformers audio encoder make the voice embedding
    (``--audio-layers``). Hidden state 0 is the input embeddings (the convolutional features
    with positions), 1..L the outputs of the L transformer layers (transformers'
    ``hidden_states`` numbering; the last one after the encoder's final norm where it has one).

    ``last``: the last hidden state; ``N``: hidden state N; ``N,M,...``: the mean of those;
    ``mean``: the mean of all L+1; ``all``: all L+1 side by side ((L+1) x D wide: each
    layer's mean over the frames, concatenated — the EmoBox / probing practice). Several
    layers are each layer-normalised per frame before they are combined.
    Whether the numbers exist is known once the model's config is read (:meth:`resolve`).
    """

    mode: AudioLayerMode = "last"
    indices: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AudioLayers:
        """From the CLI form; a :class:`ConfigError` says what is accepted."""
        if not isinstance(text, str):
            raise ConfigError(f"audio layers must be text (last, mean, all, N or N,M,...), got {text!r}")
        t = text.strip().lower()
        if t in ("last", "mean", "all"):
            return cls(t)  # type: ignore[arg-type]
        parts = [p.strip() for p in t.split(",")]
        if not t or not all(p.isascii() and p.isdigit() for p in parts):
            raise ConfigError(
                f"unknown audio layers {text!r}; use last, mean, all, a layer number N "
                "(0 = the input embeddings) or N,M,... (the mean of those layers)"
            )
        indices = tuple(int(p) for p in parts)
        if len(set(indices)) != len(indices):
            raise ConfigError(f"audio layers {text!r} names a layer twice")
        return cls("layers", tuple(sorted(indices)))

    @property
    def text(self) -> str:
        """The canonical CLI form (``"3, 1"`` → ``"1,3"``): what provenance records."""
        return self.mode if self.mode != "layers" else ",".join(str(i) for i in self.indices)

    def resolve(self, n_layers: int, model: str = "the audio model") -> tuple[int, ...]:
        """The hidden states (``0..n_layers``) to take from an encoder with ``n_layers``
        transformer layers; a number out of range is a :class:`ConfigError`."""
        if self.mode == "last":
            return (n_layers,)
        if self.mode in ("mean", "all"):
            return tuple(range(n_layers + 1))
        bad = [i for i in self.indices if i > n_layers]
        if bad:
            raise ConfigError(
                f"audio layer {bad[0]} is out of range: {model} has hidden states 0..{n_layers} "
                f"(0 = the input embeddings, {n_layers} = the last layer)"
            )
        return self.indices


@dataclass(frozen=True)
class PipelineConfig:
    asr_backend: str = "transformers"
    asr_model: str = DEFAULT_ASR_MODEL
    audio_model: str = DEFAULT_AUDIO_MODEL
    # hidden states of a transformers audio encoder that make the voice embedding (AudioLayers)
    audio_layers: str = DEFAULT_AUDIO_LAYERS
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
    # speaker diarisation (emoflow.diarization): who spoke when; every word and sentence gets a speaker
    diarize: bool = False
    diarizer: str = DEFAULT_DIARIZER  # ge2e (offline, weights from the resemblyzer wheel) | pyannote
    # pyannote: pipeline hub id or folder (None: pyannote/speaker-diarization-community-1);
    # ge2e: a resemblyzer-format checkpoint (None: the one in the installed package)
    diarizer_model: str | None = None
    speakers: int | None = None  # the exact number of speakers (None: estimated)
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        from emoflow.audio.io import check_max_duration

        check_max_duration(self.max_duration)
        if self.top_k < 1:
            raise ConfigError(f"top-k must be at least 1, got {self.top_k}")
        if self.asr_backend not in get_args(AsrBackend):
            raise ConfigError(f"unknown ASR backend {self.asr_backend!r}; use transformers or faster-whisper")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; use {', '.join(DTYPES)}")
        # canonical form ("3, 1" -> "1,3"), so equal settings compare and record equal
        object.__setattr__(self, "audio_layers", AudioLayers.parse(self.audio_layers).text)
        self._check_diarization()

    def _check_diarization(self) -> None:
        """The diarisation settings, checked without importing a backend: the speaker counts
        as :func:`emoflow.diarization.base.check_speaker_count` checks them, named as here."""
        if self.diarizer not in get_args(DiarizerBackend):
            raise ConfigError(f"unknown diarisation backend {self.diarizer!r}; use ge2e or pyannote")
        counts = {
            "speakers": self.speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }
        given = [k for k, v in counts.items() if v is not None]
        if given and not self.diarize:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(
                f"{flag} needs --diarize (diarize=True): speaker counts only apply to diarisation"
            )
        if not given:
            return
        from emoflow.diarization.base import check_speaker_count

        try:
            check_speaker_count(self.speakers, self.min_speakers, self.max_speakers)
        except ConfigError as e:  # the backend's names -> this configuration's (and the CLI's)
            raise ConfigError(str(e).replace("num_speakers", "speakers")) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- defaults of the entry points (CLI, service, batch, training) -----------------------------
# Written here once: the CLI shows them in --help, the library functions default to them.

OUTPUT_FORMATS = ("json", "npz", "csv", "srt", "png", "html")  # every file kind of a result
DEFAULT_OUT_DIR = "out"  # `emoflow analyze`: where results go when --out is not given
BATCH_CONCURRENCY = 1  # Ray: actors per model stage

# `emoflow serve` (the service's ServiceSettings)
SERVICE_HOST = "127.0.0.1"  # this machine only
SERVICE_PORT = 8000
SERVICE_STORE = ".emoflow-store"
SERVICE_MAX_UPLOAD_MB = 200.0
SERVICE_QUEUE_SIZE = 8
SERVICE_WORKERS = 1
SERVICE_RETENTION_S = 24 * 3600.0
SERVICE_MAX_DURATION_S = 3600.0  # when the pipeline's configuration sets no max_duration
MAX_REQUEST_SPEAKERS = 32  # the most speakers a request may ask for (speakers, min/max_speakers)

# live analysis (emoflow.streaming, the service's /v1/stream)
STREAM_END_SILENCE_S = 0.6  # silence that closes a speech region (its sentences are then analysed)
STREAM_ASR_CONTEXT_S = 8.0  # earlier audio Whisper hears with a new region (analyze: up to 30 s)
STREAM_SEGMENT_PAD_S = 0.3  # audio kept around a speech segment for the recogniser
STREAM_POOLED_CHUNK_S = 3.0  # a pooled live timeline's chunks (a window waits for its chunk)
STREAM_EARLY_ASR_S = 0.35  # silence after which the recogniser starts early on the open region
STREAM_MAX_STREAMS = 4  # simultaneous streams per server (more: close 1013, try again later)
STREAM_IDLE_S = 30.0  # no message for this long: close 1008
STREAM_MAX_BUFFERED_S = 30.0  # audio waiting for the models beyond this: error + close 1008
STREAM_START_TIMEOUT_S = 10.0  # the start message must come within this

# training: the fusion classifier, and emotion word2vec schemes (`emoflow train-embeddings`)
FUSION_DIM = 128  # the fusion model's hidden size d
FUSION_ABLATION = "full"
# dropout 0.2 / TrainConfig.weight_decay 0.01 stay the defaults: 0.5 / 0.1 helped audio-only Whisper
# features on 3 of 4 RAVDESS speaker folds but lost on the one fold never seen while choosing them
FUSION_DROPOUT = 0.2
FUSION_CORRELATION = "input"  # the correlation module attends per input ("labels": once per batch)
EVALUATION_SPLIT = "test"
WORD2VEC_DIM = 32
WORD2VEC_WINDOW = 5
WORD2VEC_EPOCHS = 50
DEFAULT_SEED = 0


@dataclass(frozen=True)
class TrainConfig:
    """How the fusion classifier is trained (see :mod:`emoflow.fusion.train`)."""

    epochs: int = 300
    lr: float = 2e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    patience: int = 30
    seed: int = DEFAULT_SEED
    class_weighting: bool = True
    threshold: float = 0.5  # multi-label decision threshold
    val_fraction: float = 0.15  # taken from train (stratified) when the data has no val split
