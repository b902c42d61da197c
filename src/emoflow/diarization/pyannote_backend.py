"""The ``pyannote`` diarisation backend: pyannote.audio's pretrained pipeline.

The production choice (segmentation with overlap detection + WeSpeaker embeddings + VBx
clustering in ``pyannote/speaker-diarization-community-1``), behind the same
:class:`~emoflow.diarization.base.Diarizer` contract as the offline backend. pyannote.audio is an
optional extra (``pip install 'emoflow[diarization-pyannote]'``), imported only when the backend
is built.

Where the pipeline comes from (checked before anything heavy is imported, so every failure is
a :class:`~emoflow.errors.ModelUnavailableError` within a second or two that names the fix):

* a local directory holding ``config.yaml`` (a ``hf download`` of the pipeline): loaded from
  there, no network, no token;
* a hub id: the local Hugging Face cache first (no network); otherwise, unless offline, a
  download with the token (``token=``, else ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``). The
  community-1 pipeline is gated: the token's account must have accepted its conditions on the
  model's page. No token, a refused token or offline without a cached copy → the error says so.

The pipeline is always built from a local folder (``Pipeline.from_pretrained(folder)``: its
``$model/...`` entries resolve inside that folder), so what runs is exactly what provenance names.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.diarization.base import check_speaker_count
from emoflow.diarization.types import Diarization, SpeakerTurn
from emoflow.errors import AudioError, ModelError, ModelUnavailableError
from emoflow.models import MODEL_CACHE, ModelSpec, resolve_device
from emoflow.provenance import Provenance, hub_cache_dir, model_provenance
from emoflow.types import TimeSpan

log = logging.getLogger(__name__)

BACKEND = "pyannote"
DEFAULT_PYANNOTE_MODEL = "pyannote/speaker-diarization-community-1"
CONFIG_FILE = "config.yaml"
INSTALL_HINT = "install it with `pip install 'emoflow[diarization-pyannote]'`"
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def env_token() -> str | None:
    """The Hugging Face token from the environment (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``)."""
    for k in TOKEN_VARS:
        v = os.environ.get(k, "").strip()
        if v:
            return v
    return None


def pyannote_installed() -> bool:
    """Whether pyannote.audio is installed (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("pyannote.audio") is not None
    except (ImportError, ValueError):  # no `pyannote` namespace package at all
        return False


def import_pyannote() -> Any:
    """``pyannote.audio.Pipeline``, or :class:`ModelUnavailableError` naming the install."""
    from emoflow.diarization.pyannote_compat import prepare_pyannote_import

    try:
        prepare_pyannote_import()  # telemetry off unless opted in; PyPI's CUDA torchaudio on a CPU torch
        from pyannote.audio import Pipeline
    except ImportError as e:
        raise ModelUnavailableError(
            f"the pyannote backend needs pyannote.audio, which is not installed; {INSTALL_HINT}"
        ) from e
    except Exception as e:  # e.g. a torchaudio build that does not match the installed torch
        raise ModelUnavailableError(
            f"pyannote.audio is installed but does not import ({type(e).__name__}: {str(e)[:200]}); "
            "its torchaudio must be built for the installed torch (see the README's diarisation section)"
        ) from e
    return Pipeline


def resolve_pipeline_dir(spec: ModelSpec, token: str | None) -> Path:
    """A local folder holding the pipeline's ``config.yaml`` (see the module docstring)."""
    path = Path(spec.id).expanduser()
    if path.exists():
        if not (path / CONFIG_FILE).is_file():
            raise ModelUnavailableError(
                f"pyannote pipeline directory {spec.id} has no {CONFIG_FILE}; pass a complete download "
                f"of the pipeline (`hf download {DEFAULT_PYANNOTE_MODEL}`)"
            )
        return path
    if spec.id.startswith((".", "/", "~")) or spec.id.count("/") != 1:
        raise ModelUnavailableError(
            f"pyannote pipeline {spec.id!r}: no such directory, and not a hub id (org/name)"
        )
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir(spec.cache_dir)
    fix = (
        f"accept the conditions at https://huggingface.co/{spec.id} with your account, then either "
        "set HF_TOKEN to one of its access tokens, or download it on a connected machine "
        f"(`hf download {spec.id}`) and pass the folder (--diarization-model PATH); "
        "or use the offline backend (`--diarization-backend ge2e`)"
    )
    try:  # the local cache first: no network, no token
        return Path(
            snapshot_download(spec.id, revision=spec.revision, cache_dir=cache, local_files_only=True)
        )
    except Exception as e:  # LocalEntryNotFoundError and friends
        log.debug("pyannote pipeline %s not in the local cache: %s", spec.id, e)
    if spec.is_offline:
        raise ModelUnavailableError(
            f"pyannote pipeline {spec.id}: offline mode is on and it is not in the local cache; {fix}"
        )
    if not token:
        raise ModelUnavailableError(
            f"pyannote pipeline {spec.id} is gated and no Hugging Face token is set; {fix}"
        )
    try:
        local = snapshot_download(
            spec.id, revision=spec.revision, cache_dir=cache, token=token, etag_timeout=4
        )
    except Exception as e:
        name = type(e).__name__
        status = getattr(getattr(e, "response", None), "status_code", None)
        if name in ("GatedRepoError", "RepositoryNotFoundError") or status in (401, 403):
            raise ModelUnavailableError(
                f"pyannote pipeline {spec.id}: the hub refused the token ({name}); {fix}"
            ) from e
        raise ModelUnavailableError(
            f"pyannote pipeline {spec.id}: it could not be downloaded ({name}); {fix}"
        ) from e
    return Path(local)


class PyannoteDiarizer:
    """pyannote.audio's pretrained diarisation pipeline (see the module docstring).

    ``model``: hub id or local folder (default :data:`DEFAULT_PYANNOTE_MODEL`); ``token``: the hub
    token (default from ``HF_TOKEN``); ``offline``: ``None`` follows ``HF_HUB_OFFLINE``;
    ``pipeline``: an already-built ``pyannote.audio.Pipeline`` (tests, notebooks). The pipeline
    loads in the constructor, once per process (model cache).
    """

    name = BACKEND

    def __init__(
        self,
        model: str = DEFAULT_PYANNOTE_MODEL,
        *,
        revision: str | None = None,
        token: str | None = None,
        device: str = "auto",
        offline: bool | None = None,
        cache_dir: str | None = None,
        pipeline: Any = None,
    ) -> None:
        self.spec = ModelSpec(model, revision=revision, device=device, offline=offline, cache_dir=cache_dir)
        self._token = token if token is not None else env_token()
        self._lock = threading.Lock()  # pyannote pipelines keep per-call state
        if pipeline is not None:
            self.device = "cpu" if device == "auto" else device
            self.pipeline = pipeline
            return
        if not pyannote_installed():  # fast failures first: the package, then the weights
            raise ModelUnavailableError(
                f"the pyannote backend needs pyannote.audio, which is not installed; {INSTALL_HINT}"
            )
        folder = resolve_pipeline_dir(self.spec, self._token)
        self.device = resolve_device(device)
        key = ("pyannote", str(folder.resolve()), self.device)
        self.pipeline = MODEL_CACHE.get(key, lambda: self._load(folder))

    def _load(self, folder: Path) -> Any:
        Pipeline = import_pyannote()
        import torch

        threads = torch.get_num_threads()
        try:
            pipeline = Pipeline.from_pretrained(folder)
        except ModelUnavailableError:
            raise
        except Exception as e:
            raise ModelError(
                f"pyannote pipeline {self.spec.id} did not load from {folder}: {type(e).__name__}: {e}"
            ) from e
        finally:
            torch.set_num_threads(threads)  # loading never changes the caller's thread policy
        if pipeline is None:
            raise ModelUnavailableError(
                f"pyannote pipeline {self.spec.id}: pyannote.audio found no pipeline in {folder}"
            )
        return pipeline.to(torch.device(self.device))

    def provenance(self) -> Provenance:
        """The pipeline's hub commit or folder hash (no loading, no network)."""
        return model_provenance(self.spec, backend=BACKEND)

    def __call__(
        self,
        audio: Audio,
        speech: Sequence[TimeSpan] | None = None,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> Diarization:
        """Who spoke when. ``speech`` is ignored: pyannote's segmentation model finds speech itself
        (and overlapping speech, which comes back as overlapping turns)."""
        count = check_speaker_count(num_speakers, min_speakers, max_speakers)
        if audio.sample_rate != TARGET_RATE:
            raise AudioError(
                f"diarisation needs {TARGET_RATE} Hz audio (load_audio gives it), got {audio.sample_rate}"
            )
        backend = {"backend": BACKEND, "model": self.provenance().to_dict(), **count.to_dict()}
        if len(audio.samples) == 0:
            return Diarization((), (), {**backend, "estimated_speakers": 0})
        import numpy as np
        import torch

        waveform = torch.from_numpy(np.ascontiguousarray(audio.samples, dtype=np.float32))[None]
        kwargs: dict[str, int] = {}
        if count.exact is not None:
            kwargs["num_speakers"] = count.exact
        else:
            kwargs["min_speakers"] = count.minimum
            if count.maximum is not None:
                kwargs["max_speakers"] = count.maximum
        with self._lock:
            out = self.pipeline({"waveform": waveform, "sample_rate": TARGET_RATE}, **kwargs)
        annotation = getattr(out, "speaker_diarization", out)  # 4.x: DiarizeOutput; 3.x: Annotation
        turns = annotation_to_turns(annotation, audio.duration)
        diar = Diarization.from_turns(turns, backend)
        return Diarization(
            diar.turns, diar.speakers, {**diar.backend, "estimated_speakers": diar.num_speakers}
        )


def annotation_to_turns(annotation: Any, duration: float | None = None) -> list[SpeakerTurn]:
    """A ``pyannote.core.Annotation`` → turns (clipped to ``[0, duration]``, empty ones dropped)."""
    turns = []
    for segment, _track, label in annotation.itertracks(yield_label=True):
        start, end = max(0.0, float(segment.start)), float(segment.end)
        if duration is not None:
            end = min(end, duration)
        if end > start:
            turns.append(SpeakerTurn(TimeSpan(start, end), str(label).replace(" ", "_")))
    return turns
