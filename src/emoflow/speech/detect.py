"""What an ``--audio-model`` folder or hub id holds, read from its small files (no weights loaded).

* **emotion2vec** (FunASR): ``config.yaml``, ``model.pt``, ``tokens.txt``;
* **transformers**: ``config.json`` whose ``model_type`` is one of :data:`TRANSFORMERS_TYPES`:
  a ``*ForSequenceClassification`` checkpoint (an SER head: scores with its own labels) or a
  bare encoder (any other transformers architecture of those types: ``*Model``, ``*ForCTC``,
  Whisper's ``WhisperForConditionalGeneration`` ...: embeddings only).

Anything else is a :class:`~emoflow.errors.ModelError` (or
:class:`~emoflow.errors.ModelUnavailableError` for a folder with no model files) naming what
was found and what is supported. ``--audio-layers`` is checked against the model's layer count
here, before any weights load (:class:`~emoflow.errors.ConfigError`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emoflow.config import AudioLayers
from emoflow.errors import ConfigError, ModelError, ModelUnavailableError
from emoflow.models import ModelSpec, resolve_model_dir
from emoflow.provenance import hub_cache_dir, is_hub_id

log = logging.getLogger(__name__)

E2V_FILES = ("config.yaml", "model.pt", "tokens.txt")
TRANSFORMERS_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
SUPPORTED = (
    "emotion2vec (FunASR: config.yaml, model.pt, tokens.txt) or a transformers speech model "
    f"(config.json with model_type {', '.join(TRANSFORMERS_TYPES)}: a *ForSequenceClassification "
    "SER checkpoint, a bare encoder, or any Whisper's encoder)"
)
# the small files that tell what a hub repository holds (downloaded before its weights)
METADATA = ["*.json", "*.yaml", "*.txt"]
HEAD_SUFFIXES = ("ForSequenceClassification", "ForAudioClassification")
WHAT, FLAG = "audio emotion model", "--audio-model"


@dataclass(frozen=True)
class AudioModelInfo:
    """What an audio model folder holds. ``n_layers``: transformer layers of the encoder
    (hidden states ``0..n_layers``); ``classifier``: a head emoflow runs (SER scores)."""

    kind: Literal["emotion2vec", "transformers"]
    path: Path
    model_type: str | None = None
    architecture: str | None = None
    classifier: bool = False
    n_layers: int = 0

    @property
    def encoder(self) -> str:
        """The encoder's kind as provenance records it."""
        return self.model_type or self.kind

    def check_layers(self, layers: str | AudioLayers, model: str) -> AudioLayers:
        """``--audio-layers`` for this model, or a :class:`ConfigError` saying why not."""
        sel = layers if isinstance(layers, AudioLayers) else AudioLayers.parse(layers)
        if sel.mode == "last":
            return sel
        if self.kind == "emotion2vec":
            raise ConfigError(
                f"--audio-layers {sel.text}: {model} is emotion2vec, which gives its last layer "
                "only; layers apply to transformers encoders (wav2vec2, HuBERT, WavLM, data2vec, Whisper)"
            )
        if self.classifier:
            raise ConfigError(
                f"--audio-layers {sel.text}: {model} is a classifier ({self.architecture}) whose "
                "head reads its own layers; use --audio-layers last, or a bare encoder for other layers"
            )
        sel.resolve(self.n_layers, model)
        return sel

    def provenance_options(self, layers: str | AudioLayers) -> dict[str, Any]:
        """The options the voice record gets: none for emotion2vec (records as before);
        ``encoder`` (the model type) and ``layers`` (canonical ``--audio-layers``, or ``head``
        for a classifier: what its head reads) for a transformers model."""
        if self.kind == "emotion2vec":
            return {}
        sel = layers if isinstance(layers, AudioLayers) else AudioLayers.parse(layers)
        return {"encoder": self.encoder, "layers": "head" if self.classifier else sel.text}


def model_folder(spec: ModelSpec) -> Path:
    """The local folder of ``spec``: a hub model's small files are downloaded first (when allowed)."""
    return resolve_model_dir(spec, (), what=WHAT, flag=FLAG, allow_patterns=METADATA)


def inspect_audio_model(spec: ModelSpec | str, layers: str | AudioLayers | None = None) -> AudioModelInfo:
    """What ``spec`` holds (and, with ``layers``, whether they fit it) without loading weights."""
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    info = read_folder(model_folder(spec), spec.id)
    if layers is not None:
        info.check_layers(layers, spec.id)
    return info


def read_folder(path: Path, name: str) -> AudioModelInfo:
    """Recognise the model in a local folder (see the module doc)."""
    config = path / "config.json"
    if config.is_file():
        return _transformers_info(path, name, config)
    if any((path / f).exists() for f in E2V_FILES):
        return AudioModelInfo("emotion2vec", path)  # missing files: the stage names them
    found = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    shown = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    raise ModelUnavailableError(
        f"{WHAT} {name}: the folder holds {shown or 'nothing'}, not a model emoflow reads; "
        f"supported: {SUPPORTED}"
    )


def _transformers_info(path: Path, name: str, config: Path) -> AudioModelInfo:
    try:
        d = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{WHAT} {name}: unreadable config.json ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ModelError(f"{WHAT} {name}: config.json is not a model configuration")
    model_type = d.get("model_type")
    archs = [str(a) for a in d.get("architectures") or []]
    arch = archs[0] if archs else None
    shown = f"model_type {model_type!r}" + (f" ({', '.join(archs)})" if archs else "")
    if model_type not in TRANSFORMERS_TYPES:
        raise ModelError(f"{WHAT} {name}: config.json says {shown}; supported: {SUPPORTED}")
    unknown = [a for a in archs if not _is_transformers_class(a)]
    if unknown:
        raise ModelError(
            f"{WHAT} {name}: {shown}: {unknown[0]} is not a transformers class (the checkpoint's own "
            f"code), so its head cannot be loaded faithfully; supported: {SUPPORTED}"
        )
    if model_type == "whisper":
        if arch == "WhisperForCausalLM":
            raise ModelError(f"{WHAT} {name}: {shown} is a Whisper decoder without an encoder")
        n_layers = int(d.get("encoder_layers", 0))
        classifier = False  # a Whisper head averages 30 s of padded frames: see TransformersAudioEncoder
    else:
        n_layers = int(d.get("num_hidden_layers", 0))
        classifier = arch is not None and arch.endswith(HEAD_SUFFIXES)
    if n_layers < 1:
        raise ModelError(f"{WHAT} {name}: config.json names no encoder layers")
    return AudioModelInfo("transformers", path, str(model_type), arch, classifier, n_layers)


def _is_transformers_class(name: str) -> bool:
    import transformers

    try:
        return getattr(transformers, name, None) is not None
    except Exception:  # a lazy import of an optional backend that is not installed
        return False


def audio_provenance_options(spec: ModelSpec, layers: str | AudioLayers) -> dict[str, Any]:
    """The voice record's options (:meth:`AudioModelInfo.provenance_options`) from the settings
    and the model's ``config.json`` where it is local (a folder, or the hub cache): no network,
    no weights. A hub model not downloaded yet, or emotion2vec: ``{}``."""
    path = Path(spec.id).expanduser()
    if not path.exists():
        if not is_hub_id(spec.id):
            return {}
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            spec.id, "config.json", cache_dir=hub_cache_dir(spec.cache_dir), revision=spec.revision
        )
        if not isinstance(cached, str):
            return {}
        path = Path(cached).parent
    if not path.is_dir():
        return {}
    try:
        return read_folder(path, spec.id).provenance_options(layers)
    except (ModelError, ModelUnavailableError):
        return {}
