"""The one model-loading policy.

Every model stage takes a :class:`ModelSpec`: a hub id **or** a local directory, a
revision, a device (``auto`` picks CUDA when present), a dtype, and whether to stay
offline (``--offline`` or ``HF_HUB_OFFLINE=1``). :func:`resolve_model_dir` turns the spec
into a local directory (downloading into the Hugging Face cache when allowed, never into
the working directory) and fails at once with :class:`~emoflow.errors.ModelUnavailableError`
naming the model and how to point at a local copy. :data:`MODEL_CACHE` keeps each loaded
model once per process; stages also accept an already-built model object.

:class:`Provenance` says exactly which weights a model stage uses — the hub commit a hub id
resolves to (from this process's download, or the local Hugging Face cache: no network), or a
content hash of a local directory — without loading the model. Thread counts are the entry
point's business (:func:`set_cpu_threads`): loading a model never changes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from emoflow.errors import ConfigError, ModelUnavailableError

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
        """Which weights this spec means, without loading the model (see :func:`model_provenance`)."""
        return model_provenance(self, resolve=resolve, **options)

    def provenance(self, *, resolve: bool = False) -> dict[str, Any]:
        """What a result records about the model: its id, the requested revision and the
        resolved one (hub commit, or ``sha256:...`` content hash of a local directory)."""
        return self.record(resolve=resolve).to_dict()


ProvenanceSource = Literal["hub", "local", "package", "given"]
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Provenance:
    """Exactly which weights produced a result.

    ``revision``: the resolved revision — a hub commit (40 hex digits), ``sha256:<hex>`` for a
    local directory (its files' names and bytes), a package version for weights shipped in a
    package, or ``None`` when it cannot be known without the network (a hub model that is
    neither downloaded in this process nor in the local cache).
    ``requested_revision``: what was asked for (a branch, tag or commit; ``None`` = default).
    ``options``: settings that change what the model computes (backend, pooling, ...).
    """

    id: str
    revision: str | None
    requested_revision: str | None = None
    source: ProvenanceSource = "hub"
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        core = {
            "id": self.id,
            "revision": self.revision,
            "requested_revision": self.requested_revision,
            "source": self.source,
        }
        return {**{k: v for k, v in self.options.items() if k not in core}, **core}


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache in effect now (``cache_dir``, ``HF_HUB_CACHE``, ``HF_HOME``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(k):
            return Path(os.environ[k]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


# hub commits resolved by this process's downloads: (id, requested revision, cache) -> commit
_RESOLVED: dict[tuple[str, str | None, str], str] = {}
# content hashes of local folders as this process loaded them (the folder may change later,
# the cached model does not): resolved path -> hash
_LOADED: dict[str, str] = {}


def _hub_key(spec: ModelSpec) -> tuple[str, str | None, str]:
    return (spec.id, spec.revision, str(hub_cache_dir(spec.cache_dir)))


def snapshot_commit(path: str | os.PathLike[str]) -> str | None:
    """The commit of a hub-cache snapshot folder (``.../models--org--name/snapshots/<commit>``)."""
    p = Path(path)
    in_cache = p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--")
    return p.name if in_cache and _COMMIT.fullmatch(p.name) else None


def cached_commit(
    repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """The commit ``revision`` (default ``main``) points at in the local hub cache; no network."""
    rev = revision or "main"
    if _COMMIT.fullmatch(rev):
        return rev
    folder = hub_cache_dir(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    try:
        commit = (folder / "refs" / rev).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return commit if _COMMIT.fullmatch(commit) and (folder / "snapshots" / commit).is_dir() else None


def _is_hub_id(model_id: str) -> bool:
    return not model_id.startswith((".", "/", "~")) and model_id.count("/") == 1


def model_provenance(spec: ModelSpec, *, resolve: bool = False, **options: Any) -> Provenance:
    """Which weights ``spec`` means, without loading the model and without the network.

    A local directory: its content hash as this process loaded it (the folder's current hash
    when it was not loaded here), or its commit when it is a hub-cache snapshot folder.
    A hub id: the commit this process's download resolved to, else the commit the requested
    revision points at in the local cache. ``resolve=True`` first makes sure the files are local
    (:func:`resolve_model_dir`: a download when allowed), so the commit is known whenever the
    model can be loaded at all; a model that cannot be had stays ``None``, not an error.
    """
    opts = {**spec.options, **options}
    path = Path(spec.id).expanduser()
    if path.exists():
        real = path.resolve()
        revision = snapshot_commit(real) or _LOADED.get(str(real)) or directory_digest(path)
        return Provenance(spec.id, revision, spec.revision, "local", opts)
    if not _is_hub_id(spec.id):
        return Provenance(spec.id, None, spec.revision, "local", opts)
    if resolve and _hub_key(spec) not in _RESOLVED:
        try:
            resolve_model_dir(spec)
        except ModelUnavailableError as e:
            log.debug("provenance of %s: %s", spec.id, e)
    commit = _RESOLVED.get(_hub_key(spec)) or cached_commit(spec.id, spec.revision, spec.cache_dir)
    return Provenance(spec.id, commit, spec.revision, "hub", opts)


def package_provenance(model_id: str, distribution: str, **options: Any) -> Provenance:
    """Weights shipped inside a Python package (e.g. Silero VAD): the package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v: str | None = version(distribution)
    except PackageNotFoundError:
        v = None
    return Provenance(model_id, None if v is None else f"{distribution}=={v}", None, "package", options)


# content hashes of local model directories, once per process: (path, names, sizes, mtimes) -> hash
_DIGESTS: dict[Hashable, str] = {}
_DIGEST_LOCK = threading.Lock()


def _model_files(root: Path) -> list[tuple[str, Path]]:
    """The files of a model directory, by relative name; hidden entries (``.git``, ``.cache``) and
    ``__pycache__`` are left out. Symlinked files count (hub snapshots are symlinks to blobs);
    symlinked folders are not followed (no loops)."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            p = Path(dirpath, name)
            if not name.startswith(".") and p.is_file():
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def _hash_files(files: list[tuple[str, Path]], block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    for rel, p in files:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h.update(f"{rel}\0{size}\0".encode())
            while chunk := f.read(block):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def directory_digest(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` over a model directory's file names and bytes (where the folder lives does
    not matter; a single file: its name and bytes). Computed once per process for each state of
    the folder (names, sizes, mtimes); reads only — the folder may be read-only, nothing is
    written into it."""
    root = Path(path).expanduser().resolve()
    files = [(root.name, root)] if root.is_file() else _model_files(root)
    stats = []
    for rel, p in files:
        st = p.stat()
        stats.append((rel, st.st_size, st.st_mtime_ns))
    key = (str(root), tuple(stats))
    with _DIGEST_LOCK:  # one hash at a time: two workers asking at once hash the folder once
        if key not in _DIGESTS:
            _DIGESTS[key] = _hash_files(files)
        return _DIGESTS[key]


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
        real = path.resolve()
        if not snapshot_commit(real):  # what this process loads, before anything can change it
            _LOADED[str(real)] = directory_digest(real)
        return path
    if spec.id.startswith((".", "/", "~")) or spec.id.count("/") != 1:
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
        _RESOLVED[_hub_key(spec)] = commit
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
