"""Which models an analysis uses, from its settings alone: their specs and provenance records.

:func:`models_provenance` is the one place where a :class:`~emoflow.config.PipelineConfig`'s
models become :class:`~emoflow.provenance.Provenance` records — a result's ``models``, the
fusion feature cache (``features.json``) and fusion checkpoints all come from it. It loads no
model and uses no network (``resolve`` may download, never load). :func:`config_from_provenance`
goes back: the settings that name the models of a set of records (a fusion model's features).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from emoflow.audio.vad import SILERO
from emoflow.config import EmbeddingConfig, PipelineConfig
from emoflow.models import ModelSpec
from emoflow.provenance import Provenance, directory_digest, model_provenance, package_provenance

# the records' names, as results store them (``fusion`` only with a fusion model, ``diarization``
# only with diarize=True)
MODEL_KEYS: Final = (
    "asr",
    "audio_emotion",
    "text_emotion",
    "sequence_encoder",
    "vad",
    "fusion",
    "diarization",
)
# the ASR record of an analysis given a transcript instead of running ASR
GIVEN_TRANSCRIPT: Final = Provenance("precomputed transcript", None, source="given")


def model_spec(config: PipelineConfig, model: str) -> ModelSpec:
    """The spec a pipeline loads ``model`` with: the config's device, dtype and offline mode."""
    return ModelSpec(model, device=config.device, dtype=config.dtype, offline=config.offline)


def models_provenance(
    config: PipelineConfig, *, transcript_given: bool = False, resolve: Collection[str] = ()
) -> dict[str, Provenance]:
    """The provenance record of each model ``config`` names, keyed as in :data:`MODEL_KEYS`.

    ``transcript_given``: the analysis reads a transcript instead of running ASR.
    ``resolve``: keys of the records whose hub files are made local first (a download when
    allowed), so their commits are known (the feature cache, whose key must not change once a
    model has been downloaded). Nothing is loaded either way.
    """
    c = config

    def record(key: str, model: str, **options: Any) -> Provenance:
        return model_spec(c, model).record(resolve=key in resolve, **options)

    return {
        "asr": GIVEN_TRANSCRIPT if transcript_given else record("asr", c.asr_model, backend=c.asr_backend),
        "audio_emotion": _audio(c, resolve="audio_emotion" in resolve),
        "text_emotion": record("text_emotion", c.text_model),
        "sequence_encoder": _embedding(c, resolve="sequence_encoder" in resolve),
        "vad": package_provenance(SILERO, SILERO),
        **({"fusion": record("fusion", c.fusion_model)} if c.fusion_model else {}),
        **({"diarization": diarization_provenance(c)} if c.diarize else {}),
    }


def diarization_provenance(config: PipelineConfig) -> Provenance:
    """The diarisation backend's record: its weights (pyannote: the pipeline's hub commit or
    folder hash; ge2e: the ``resemblyzer`` package's version, or a custom checkpoint's hash),
    the backend and its settings, and the speaker-count options. Loads nothing."""
    c = config
    count: dict[str, Any] = {
        "num_speakers": c.speakers,
        "min_speakers": c.min_speakers,
        "max_speakers": c.max_speakers,
    }
    if c.diarizer == "pyannote":
        from emoflow.diarization.pyannote_backend import BACKEND, DEFAULT_PYANNOTE_MODEL

        spec = ModelSpec(c.diarizer_model or DEFAULT_PYANNOTE_MODEL, device=c.device, offline=c.offline)
        return model_provenance(spec, backend=BACKEND, **count)
    from emoflow.diarization import ge2e
    from emoflow.diarization.offline import BACKEND as GE2E
    from emoflow.diarization.offline import MODEL_ID, OfflineDiarizerConfig

    options = {"backend": GE2E, **_flat(OfflineDiarizerConfig().to_dict()), **count}
    if c.diarizer_model is None:
        return package_provenance(MODEL_ID, ge2e.DISTRIBUTION, **options)
    path = Path(c.diarizer_model).expanduser()
    revision = directory_digest(path) if path.exists() else None
    return Provenance(str(path), revision, None, "local", options)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level: ``{"vad": {"threshold": 0.35}}`` -> ``{"vad.threshold": 0.35}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _audio(config: PipelineConfig, *, resolve: bool) -> Provenance:
    """The voice model's record; a transformers encoder's also names its type and layers
    (read from its config.json once local: so features from other layers never mix)."""
    from emoflow.speech.detect import audio_provenance_options

    spec = model_spec(config, config.audio_model)
    if resolve:
        spec.record(resolve=True)  # the model's files are local first (a download when allowed)
    return spec.record(**audio_provenance_options(spec, config.audio_layers))


def _embedding(config: PipelineConfig, *, resolve: bool) -> Provenance:
    """The sequence embedding's record: the encoder and its pooling, or a trained scheme."""
    from emoflow.text.embeddings import embedding_provenance

    e = config.embedding
    spec = model_spec(config, config.encoder_model)
    if resolve and e.method != "word2vec":
        spec.record(resolve=True)  # the encoder's files are local (a download when allowed)
    return embedding_provenance(e.method, spec=spec, layers=e.layers, weights=e.weights, scheme=e.scheme)


# the records whose id is all the settings say about them: record key -> PipelineConfig field
_MODEL_SETTINGS: Final = {
    "audio_emotion": "audio_model",
    "text_emotion": "text_model",
    "fusion": "fusion_model",
}


def config_from_provenance(models: Mapping[str, Provenance], base: PipelineConfig) -> PipelineConfig:
    """``base`` with the models (and their settings) the records name: the inverse of
    :func:`models_provenance` for the records given (others keep ``base``'s)."""
    changes: dict[str, Any] = {}
    asr = models.get("asr")
    if asr is not None and asr.source != "given":
        changes.update(asr_model=asr.id, asr_backend=str(asr.options.get("backend", base.asr_backend)))
    for key, name in _MODEL_SETTINGS.items():
        if key in models:
            changes[name] = models[key].id
    audio = models.get("audio_emotion")
    if audio is not None:  # a classifier's head reads its own layers: "head" is the default here
        layers = str(audio.options.get("layers", "last"))
        changes["audio_layers"] = "last" if layers == "head" else layers
    diarization = models.get("diarization")
    if diarization is not None:
        changes.update(_diarization_settings(diarization))
    encoder = models.get("sequence_encoder")
    if encoder is not None:
        o = encoder.options
        if o.get("method") == "generation":  # a trained scheme: its folder
            changes["embedding"] = EmbeddingConfig("word2vec", scheme=str(o.get("path", encoder.id)))
        else:
            weights = o.get("weights")
            changes["encoder_model"] = encoder.id
            changes["embedding"] = EmbeddingConfig(
                str(o.get("pooling", "cls")),
                layers=tuple(int(i) for i in o.get("layers", EmbeddingConfig.layers)),
                weights=tuple(float(w) for w in weights) if weights else None,
            )
    return replace(base, **changes)


def _diarization_settings(record: Provenance) -> dict[str, Any]:
    """The settings a ``diarization`` record names (the inverse of :func:`diarization_provenance`)."""
    o = record.options
    backend = str(o.get("backend", "ge2e"))

    def count(key: str) -> int | None:
        v = o.get(key)
        return None if v is None else int(v)

    default = record.source == "package" if backend == "ge2e" else False
    return {
        "diarize": True,
        "diarizer": backend,
        "diarizer_model": None if default else record.id,
        "speakers": count("num_speakers"),
        "min_speakers": count("min_speakers"),
        "max_speakers": count("max_speakers"),
    }
