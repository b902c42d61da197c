"""The base of every model stage: one loading prologue, one inference wrapper.

A model stage (ASR, audio emotion, text emotion, sequence embedder, ...) subclasses
:class:`ModelStage` and writes only what is its own:

* class attributes ``kind`` (cache key), ``what`` and ``flag`` (for messages: "text emotion
  model", "--text-model"), ``required_files`` (checked before loading) and ``cpu_bf16``
  (whether ``dtype=auto`` may pick bfloat16 on CPUs with native bf16);
* ``load(path)``: build the model from a local folder (found by :func:`resolve_model_dir`);
* ``options()``: the settings that change what it computes (they go into its provenance);
* ``preprocess`` → ``_forward`` → ``postprocess`` for one batch; :meth:`run` chains them
  under ``torch.inference_mode``; the stage's public methods batch and call :meth:`run`.

A stage whose library runs the model itself (faster-whisper, transformers' ASR pipeline)
still writes the three steps: what goes in, the library call, what comes out. A backend
with its own compute types (CTranslate2's ``int8``) overrides :meth:`compute_dtype`; weights
that are not a folder (a package's) override ``_load`` and :meth:`provenance`.

The base owns the spec, device and dtype, the process-wide :data:`MODEL_CACHE` (two
stages with the same model share it), folder resolution and provenance (which never
loads a model). Thread counts are not a stage's business: entry points set them
(:func:`emoflow.models.set_cpu_threads`); a stage reads them (CTranslate2's pool follows the
caller's count) and never leaves them changed (Silero VAD runs each call on one thread and
restores the caller's count).

Adding a stage: subclass, set the class attributes, write ``load`` and the three steps,
and add a Protocol for its contract in :mod:`emoflow.protocols` if the pipeline uses it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from emoflow.models import MODEL_CACHE, ModelSpec, resolve_device, resolve_dtype, resolve_model_dir
from emoflow.provenance import Provenance, model_provenance

Loaded = TypeVar("Loaded")


class ModelStage(Generic[Loaded]):
    """A stage built on one loaded model (``self.loaded``), shared through the model cache."""

    kind: ClassVar[str] = "model"
    what: ClassVar[str] = "model"
    flag: ClassVar[str] = "--model"
    required_files: ClassVar[tuple[str, ...]] = ()
    cpu_bf16: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec | str, *, loaded: Loaded | None = None) -> None:
        """Resolve device and dtype, then take ``loaded`` (a model built by the caller: tests,
        notebooks) or the cached model, loading it on first use. A subclass sets what
        :meth:`load` and :meth:`options` need before calling this."""
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.device = resolve_device(self.spec.device)
        self.dtype = self.compute_dtype()
        self.loaded: Loaded = loaded if loaded is not None else MODEL_CACHE.get(self.cache_key(), self._load)

    # ---- loading -------------------------------------------------------------------------
    def compute_dtype(self) -> Any:
        """The dtype the model computes in: a torch dtype from ``spec.dtype`` (``auto``: see
        :func:`~emoflow.models.resolve_dtype`); a backend with its own types overrides this."""
        return resolve_dtype(self.spec.dtype, self.device, cpu_bf16=self.cpu_bf16)

    def cache_key(self) -> Hashable:
        """What determines the loaded model (a stage with load-time options adds them)."""
        return (self.kind, self.spec.id, self.spec.revision, self.device, str(self.dtype))

    def model_dir(self) -> Path:
        """The local folder holding the model (downloaded when allowed), or a clear error."""
        return resolve_model_dir(self.spec, self.required_files, what=self.what, flag=self.flag)

    def _load(self) -> Loaded:
        from emoflow.audio.torchaudio_compat import ensure_torchaudio_if_installed

        path = self.model_dir()
        ensure_torchaudio_if_installed()  # a CUDA torchaudio wheel next to a CPU torch breaks imports
        return self.load(path)

    def load(self, path: Path) -> Loaded:
        """Build the model from its local folder (on ``self.device`` in ``self.dtype``)."""
        raise NotImplementedError

    # ---- provenance ----------------------------------------------------------------------
    def options(self) -> Mapping[str, Any]:
        """Settings that change what the stage computes, recorded in its provenance."""
        return {}

    def provenance(self) -> Provenance:
        """Exactly which weights and settings this stage runs (never loads anything)."""
        return model_provenance(self.spec, **self.options())

    def describe(self) -> dict[str, Any]:
        """:meth:`provenance` as the JSON record results store."""
        return self.provenance().to_dict()

    @property
    def dtype_name(self) -> str:
        """The compute dtype as a plain name (``float32``, ``bfloat16``, ``float16``)."""
        return str(self.dtype).replace("torch.", "")

    # ---- inference -----------------------------------------------------------------------
    def preprocess(self, inputs: Any) -> Any:
        raise NotImplementedError

    def _forward(self, batch: Any) -> Any:
        """The model on one preprocessed batch; called under ``inference_mode`` by :meth:`run`."""
        raise NotImplementedError

    def postprocess(self, outputs: Any) -> Any:
        raise NotImplementedError

    def run(self, inputs: Any) -> Any:
        """preprocess → _forward (no autograd) → postprocess for one batch."""
        import torch

        batch = self.preprocess(inputs)
        with torch.inference_mode():
            outputs = self._forward(batch)
        return self.postprocess(outputs)
