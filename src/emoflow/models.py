"""The one model-loading policy.

Every model stage takes a :class:`ModelSpec`: a hub id **or** a local directory, a
revision, a device (``auto`` picks CUDA when present), a dtype, and whether to stay
offline (``--offline`` or ``HF_HUB_OFFLINE=1``). :func:`resolve_model_dir` turns the spec
into a local directory (downloading into the Hugging Face cache when allowed, never into
the working directory) and fails at once with :class:`~emoflow.errors.ModelUnavailableError`
naming the model and how to point at a local copy. :data:`MODEL_CACHE` keeps each loaded
model once per process; stages also accept an already-built model object.

Which weights a spec means (:class:`~emoflow.provenance.Provenance`, without loading) is
computed in :mod:`emoflow.provenance`; its names are re-exported here. Thread counts are the
entry point's business (:func:`set_cpu_threads`): loading a model never changes them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.provenance import (
    Provenance,
    ProvenanceSource,
    cached_commit,
    directory_digest,
    hub_cache_dir,
    is_hub_id,
    is_resolved,
    model_provenance,
    package_provenance,
    remember_commit,
    remember_loaded,
    snapshot_commit,
)

__all__ = [  # the loading policy, and the provenance names that have always been importable from here
    "MODEL_CACHE",
    "ModelCache",
    "ModelSpec",
    "Provenance",
    "ProvenanceSource",
    "available_cores",
    "cached_commit",
    "cpu_has_native_bf16",
    "directory_digest",
    "env_offline",
    "hub_cache_dir",
    "model_provenance",
    "package_provenance",
    "resolve_device",
    "resolve_dtype",
    "resolve_model_dir",
    "set_cpu_threads",
    "snapshot_commit",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

TRUE = {"1", "true", "yes", "on"}


def env_offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and where it runs.

    ``id``: a hub id (``org/name``) or a path to a local directory.
    ``offline``: ``None`` follows ``HF_HUB_OFFLINE``; ``True`` never touches the network.
    ``dtype``: ``auto`` (float32 on CPU, float16 on CUDA), ``float32``, ``float16`` or ``bfloat16``.
    """

    id: str
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    offline: bool | None = None
    cache_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        return Path(self.id).expanduser().exists()

    @property
    def is_offline(self) -> bool:
        return env_offline() if self.offline is None else self.offline

    def record(self, *, resolve: bool = False, **options: Any) -> Provenance:
        """Which weights this spec means, without loading the model (see
        :func:`~emoflow.provenance.model_provenance`). ``resolve=True`` first makes sure a hub
        model's files are local (:func:`resolve_model_dir`: a download when allowed), so its
        commit is known whenever the model can be loaded at all; a model that cannot be had
        keeps ``revision=None``, it is not an error."""
        if resolve and is_hub_id(self.id) and not self.is_local and not is_resolved(self):
            try:
                resolve_model_dir(self)
            except ModelUnavailableError as e:
                log.debug("provenance of %s: %s", self.id, e)
        return model_provenance(self, **options)

    def provenance(self, *, resolve: bool = False) -> dict[str, Any]:
        """What a result records about the model: its id, the requested revision and the
        resolved one (hub commit, or ``sha256:...`` content hash of a local directory)."""
        return self.record(resolve=resolve).to_dict()


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else passes through."""
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"device {device!r} asked for but no CUDA GPU is visible; use --device cpu")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bfloat16 matrix instructions (AVX512-BF16 / AMX), where bf16 is fast."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str, device: str, cpu_bf16: bool = False) -> Any:
    """``auto``: float16 on CUDA; on the CPU bfloat16 where ``cpu_bf16`` allows it and the CPU
    has native bf16, else float32. Stages whose outputs must match float32 closely (emotion2vec,
    Whisper's word timing, embeddings) pass ``cpu_bf16=False``."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.float16
        return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16") from None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# torch's thread count is process-wide: every temporary change is made under this one lock, so
# two stages changing it at once never leave the caller's count behind
_THREADS_LOCK = threading.Lock()


@contextmanager
def one_cpu_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block on one torch thread (many tiny calls: Silero VAD, the GE2E speaker encoder),
    then restore the caller's count. Blocks run one at a time in the process."""
    import torch

    with _THREADS_LOCK:
        threads = torch.get_num_threads()
        if enabled:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if enabled:
                torch.set_num_threads(threads)


def set_cpu_threads(n: int | None = None) -> None:
    """Set torch's intra-op threads: ``n``, or every core this process may use.

    Process-wide policy, so only entry points call it (the CLI, the service, a Ray actor with
    ``1``); loading a model never does, and keeps whatever the caller chose.
    """
    import torch

    if n is None:
        n = available_cores()
    if n < 1:
        raise ConfigError(f"thread count must be at least 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def resolve_model_dir(
    spec: ModelSpec,
    required: Iterable[str] = (),
    what: str = "model",
    flag: str = "--model",
    allow_patterns: list[str] | None = None,
) -> Path:
    """A local directory holding the model's files, or :class:`ModelUnavailableError` at once."""
    required = list(required)
    path = Path(spec.id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelUnavailableError(f"{what} {spec.id}: is a file; pass the model's directory")
        missing = [f for f in required if not (path / f).exists()]
        if missing:
            raise ModelUnavailableError(
                f"{what} directory {spec.id} lacks {', '.join(missing)}; "
                "is it a complete download of the model?"
            )
        remember_loaded(path)  # what this process loads, before anything can change it
        return path
    if not is_hub_id(spec.id):
        raise ModelUnavailableError(f"{what} {spec.id!r}: no such directory, and not a hub id (org/name)")
    from huggingface_hub import snapshot_download

    hint = (
        f"download it on a connected machine (`hf download {spec.id}`) and copy the Hugging Face cache, "
        f"or pass a local directory with {flag} PATH"
    )
    try:
        local = snapshot_download(
            spec.id,
            revision=spec.revision,
            cache_dir=hub_cache_dir(spec.cache_dir),  # the cache provenance looks in, read now
            local_files_only=spec.is_offline,
            allow_patterns=allow_patterns,
        )
    except Exception as e:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP and network errors
        mode = (
            "offline mode is on and it is not in the local cache"
            if spec.is_offline
            else f"it could not be downloaded ({type(e).__name__})"
        )
        raise ModelUnavailableError(f"{what} {spec.id}: {mode}; {hint}") from e
    path = Path(local)
    missing = [f for f in required if not (path / f).exists()]
    if missing:
        raise ModelUnavailableError(f"{what} {spec.id}: the download lacks {', '.join(missing)}; {hint}")
    commit = snapshot_commit(path)
    if commit:  # what this process loads: results name this commit even if the branch moves on
        remember_commit(spec, commit)
    return path


class ModelCache:
    """Loaded models, once per process, keyed by what determines them (kind, id, revision, device, dtype)."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._items:
                log.info("loading %s", key)
                self._items[key] = load()
            return self._items[key]  # type: ignore[no-any-return,unused-ignore]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


MODEL_CACHE = ModelCache()
