"""The options that set analysis settings, each declared once against :mod:`emoflow.config`.

:data:`OPTIONS` maps a parameter name to its :class:`Option`: its type, help, and the
:class:`~emoflow.config.PipelineConfig` field it sets (dotted for a stage's settings), whose
default it shows. A command takes the ones it needs with :func:`with_options`, which adds them
to its signature (typer reads ``__signature__``) and hands their values to the command as one
``options`` dict; :func:`pipeline_config` turns that dict into the configuration.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast, get_args

import typer

from emoflow import config as cfg
from emoflow.cli.common import usage_errors

F = TypeVar("F", bound=Callable[..., Any])


def choices(name: str, literal: Any) -> type[Enum]:
    """A string Enum of a ``Literal``'s values: typer shows and checks them as the choices."""
    return cast("type[Enum]", Enum(name, [(v.replace("-", "_"), v) for v in get_args(literal)], type=str))


AsrBackendChoice = choices("AsrBackendChoice", cfg.AsrBackend)
TimelineChoice = choices("TimelineChoice", cfg.TimelineMode)
SplitterChoice = choices("SplitterChoice", cfg.Splitter)
DiarizerChoice = choices("DiarizerChoice", cfg.DiarizerBackend)


def _field(path: str) -> Any:
    """The dataclass field of ``PipelineConfig`` at a dotted ``path`` (``timeline.window_s``)."""
    owner: Any = cfg.PipelineConfig
    *heads, last = path.split(".")
    for head in heads:
        owner = _field_named(owner, head).default_factory
    return _field_named(owner, last)


def _field_named(owner: Any, name: str) -> Any:
    return next(f for f in fields(owner) if f.name == name)


def config_default(path: str) -> Any:
    """The default of a ``PipelineConfig`` field, without building the configuration."""
    f = _field(path)
    return f.default if f.default is not MISSING else f.default_factory()


def embedding_text(embedding: cfg.EmbeddingConfig) -> str:
    """The CLI form of an embedding (the inverse of :meth:`EmbeddingConfig.parse`)."""
    return f"word2vec:{embedding.scheme}" if embedding.method == "word2vec" else embedding.method


def _flag_on(value: bool) -> bool | None:
    return True if value else None  # off: None follows the environment (HF_HUB_OFFLINE)


@dataclass(frozen=True)
class Option:
    """One option. ``field``: the ``PipelineConfig`` field it sets; ``default``: shown when it sets
    none; ``to_config`` / ``from_config``: the option's value to the field's and back (for the
    default); ``decls``: its flags when not the parameter's name (``--offline`` has no ``--no-``)."""

    type: Any
    help: str
    field: str | None = None
    default: Any = None
    to_config: Callable[[Any], Any] | None = None
    from_config: Callable[[Any], Any] | None = None
    decls: tuple[str, ...] = ()

    def default_value(self) -> Any:
        if self.field is None:
            return self.default
        value = config_default(self.field)
        if self.from_config is not None:
            return self.from_config(value)
        if isinstance(self.type, type) and issubclass(self.type, Enum):
            return self.type(value)
        return value

    def config_value(self, value: Any) -> Any:
        if self.to_config is not None:
            return self.to_config(value)
        return value.value if isinstance(value, Enum) else value

    def parameter(self, name: str, help: str | None = None) -> inspect.Parameter:
        option = typer.Option(*self.decls, help=help or self.help)
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default_value(),
            annotation=Annotated[self.type, option],
        )


OPTIONS: dict[str, Option] = {
    "asr_backend": Option(AsrBackendChoice, "ASR backend.", "asr_backend"),
    "asr_model": Option(
        str,
        "ASR: hub id or local directory (CrisperWhisper is CC BY-NC 4.0; "
        "openai/whisper-large-v3-turbo is MIT).",
        "asr_model",
    ),
    "audio_model": Option(
        str,
        "Voice model, hub id or local directory: emotion2vec, a transformers SER classifier "
        "(wav2vec2/HuBERT/WavLM/data2vec-audio *ForSequenceClassification) or a bare encoder of "
        "those types or any Whisper (embeddings only: voice scores then need --fusion-model).",
        "audio_model",
    ),
    "audio_layers": Option(
        str,
        "Hidden states of a transformers voice encoder that make the embedding: last, N "
        "(0 = input embeddings), N,M,... (their mean), mean (of all) or all (all layers, concatenated).",
        "audio_layers",
    ),
    "text_model": Option(str, "Text emotion classifier: hub id or local directory.", "text_model"),
    "encoder_model": Option(str, "Sequence encoder for extraction embeddings.", "encoder_model"),
    "embedding": Option(
        str,
        "cls, layers or word2vec:PATH (a trained scheme).",
        "embedding",
        to_config=cfg.EmbeddingConfig.parse,
        from_config=embedding_text,
    ),
    "top_k": Option(int, "Emotions per emotion sequence.", "top_k"),
    "window": Option(
        float,
        f"Timeline window (s), {cfg.MIN_WINDOW_S:g} to {config_default('timeline.chunk_s'):g}.",
        "timeline.window_s",
    ),
    "hop": Option(
        float,
        f"Timeline hop (s), {cfg.MIN_HOP_S:g} to {cfg.MAX_HOP_S:g}; "
        f"at most {cfg.MAX_TIMELINE_WINDOWS} windows per recording.",
        "timeline.hop_s",
    ),
    "timeline": Option(
        TimelineChoice,
        "exact: each window through the model; pooled: one pass, window means of frames (faster).",
        "timeline.mode",
    ),
    "language": Option(str | None, "Language for multilingual ASR models.", "asr.language"),
    "formats": Option(
        str,
        "Comma-separated outputs: json,npz,csv,srt,png,html.",
        default=",".join(cfg.OUTPUT_FORMATS),
        decls=("--format",),
    ),
    "fusion_model": Option(
        Path | None,
        "A trained fusion model (emoflow train): adds fused predictions per sentence.",
        "fusion_model",
        to_config=lambda path: str(path) if path else None,
    ),
    "max_duration": Option(
        float | None,
        "Refuse recordings longer than this (s of decoded audio); checked from the header "
        "before decoding where it tells. Default: no limit.",
        "max_duration",
    ),
    "device": Option(str, "auto, cpu, cuda or cuda:N.", "device"),
    "dtype": Option(
        str,
        "auto (float16 on CUDA; bfloat16 for emotion2vec and the text classifier on CPUs with "
        "native bf16; float32 elsewhere), float32, bfloat16 or float16.",
        "dtype",
    ),
    "offline": Option(
        bool,
        "Never touch the network (also HF_HUB_OFFLINE=1).",
        "offline",
        to_config=_flag_on,
        from_config=bool,
        decls=("--offline",),
    ),
    # who spoke when (emoflow.diarization)
    "diarize": Option(
        bool,
        "Find who spoke when: every word and sentence gets a speaker (SPEAKER_00, ...); adds "
        "speakers.csv and diarization.rttm.",
        "diarize",
        decls=("--diarize/--no-diarize",),
    ),
    "diarizer": Option(
        DiarizerChoice,
        "Diarisation backend: ge2e (offline, GE2E weights from the resemblyzer wheel, Apache-2.0) or "
        "pyannote (pyannote.audio's pretrained pipeline; gated on the hub: HF_TOKEN).",
        "diarizer",
    ),
    "diarizer_model": Option(
        str | None,
        "pyannote: pipeline hub id or local folder (default pyannote/speaker-diarization-community-1); "
        "ge2e: a resemblyzer-format checkpoint (default: the packaged one).",
        "diarizer_model",
    ),
    "speakers": Option(int | None, "The exact number of speakers (default: estimated).", "speakers"),
    "min_speakers": Option(int | None, "At least this many speakers when estimating.", "min_speakers"),
    "max_speakers": Option(int | None, "At most this many speakers when estimating.", "max_speakers"),
    # how transcripts are read and cut into sentences
    "splitter": Option(SplitterChoice, "How to find sentences.", "sentences.splitter"),
    "pause": Option(float, "Pause (s) that ends a sentence when splitting at pauses.", "sentences.pause_s"),
    "max_sentence": Option(
        float, "Longest sentence (s) before splitting at pauses.", "sentences.max_sentence_s"
    ),
    "no_refine": Option(
        bool,
        "Keep word-based times even with audio.",
        "sentences.refine",
        to_config=operator.not_,
        from_config=operator.not_,
        decls=("--no-refine",),
    ),
    "drop_fillers": Option(bool, "Remove fillers like [UM].", "asr.drop_fillers", decls=("--drop-fillers",)),
    "pause_adjust": Option(
        bool,
        "Apply CrisperWhisper's pause adjustment.",
        "asr.pause_adjust",
        from_config=bool,  # the flag is off by default; the setting's None means "auto"
        decls=("--pause-adjust",),
    ),
}

# what the analysis commands (analyze, batch, serve) take, in --help's order
ANALYSIS = (
    "asr_backend",
    "asr_model",
    "audio_model",
    "audio_layers",
    "text_model",
    "encoder_model",
    "embedding",
    "top_k",
    "window",
    "hop",
    "timeline",
    "language",
    "fusion_model",
    "diarize",
    "diarizer",
    "diarizer_model",
    "speakers",
    "min_speakers",
    "max_speakers",
    "max_duration",
    "device",
    "dtype",
    "offline",
)


def with_options(*names: str, help: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Add the options ``names`` (keys of :data:`OPTIONS`) to a command, after its own
    parameters; the command receives their values as one keyword argument ``options``.
    ``help``: this command's own help text for some of them."""
    help = dict(help or {})
    unknown = (set(names) - OPTIONS.keys()) | (help.keys() - set(names))
    if unknown:
        raise KeyError(f"no such option here: {', '.join(sorted(unknown))}")
    added = [OPTIONS[name].parameter(name, help.get(name)) for name in names]

    def decorate(command: F) -> F:
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "options"]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return command(*args, options=options, **kwargs)

        signature = own.replace(parameters=[*params, *added])
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return wrapper  # type: ignore[return-value]

    return decorate


def pipeline_config(options: Mapping[str, Any]) -> cfg.PipelineConfig:
    """The configuration the parsed ``options`` describe (other settings at their defaults);
    an invalid value is a usage error (exit code 2)."""
    top: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    with usage_errors():
        for name, value in options.items():
            option = OPTIONS[name]
            if option.field is None:
                continue
            head, _, rest = option.field.partition(".")
            if rest:
                stages.setdefault(head, {})[rest] = option.config_value(value)
            else:
                top[head] = option.config_value(value)
        for head, settings in stages.items():
            top[head] = _field(head).default_factory(**settings)
        config = _fusion_layers(cfg.PipelineConfig(**top))
        if config.audio_layers != cfg.DEFAULT_AUDIO_LAYERS:
            # layers the voice model does not have: a usage error now, before any weights load
            # (a model emoflow cannot read is a ModelError, exit 4, raised through)
            from emoflow.provenance_record import model_spec
            from emoflow.speech.detect import inspect_audio_model

            inspect_audio_model(model_spec(config, config.audio_model), config.audio_layers)
        return config


def _fusion_layers(config: cfg.PipelineConfig) -> cfg.PipelineConfig:
    """With ``--fusion-model`` and the default ``--audio-layers``: the layers the fusion model's
    features were made with, when it was trained on the same voice model (so ``analyze
    --audio-model X --fusion-model M`` just works; other mismatches are refused as before)."""
    if not config.fusion_model or config.audio_layers != cfg.DEFAULT_AUDIO_LAYERS:
        return config
    import json
    from dataclasses import replace
    from pathlib import Path

    try:
        meta = json.loads((Path(config.fusion_model) / "config.json").read_text(encoding="utf-8"))
        audio = meta["features"]["audio_model"]
        trained_on, layers = str(audio["id"]), audio.get("options", {}).get("layers")
    except (OSError, ValueError, KeyError, TypeError):
        return config  # not readable here: the fusion model's loader says what is wrong
    if trained_on != config.audio_model or not isinstance(layers, str) or layers in ("head", "last"):
        return config
    return replace(config, audio_layers=layers)
