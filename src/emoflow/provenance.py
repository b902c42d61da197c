"""Which weights a model stage uses, known without loading the model and without the network.

:class:`Provenance` is the one record of a model's identity: its id, the revision asked for,
the revision it resolves to — the hub commit a hub id resolves to (from this process's
download, or the local Hugging Face cache), a content hash of a local directory, or a package
version — and the settings that change what it computes. Results, fusion checkpoints and the
fusion feature cache all store it (``to_dict`` / ``from_dict``).

Loading (:func:`emoflow.models.resolve_model_dir`) tells this module what it loaded
(:func:`remember_commit`, :func:`remember_loaded`), so a result names exactly the weights the
process holds even if a branch moves on or a folder changes afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from emoflow.errors import InputError

if TYPE_CHECKING:
    from emoflow.models import ModelSpec

ProvenanceSource = Literal["hub", "local", "package", "given"]
SOURCES: tuple[ProvenanceSource, ...] = ("hub", "local", "package", "given")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CORE = ("id", "revision", "requested_revision", "source")


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
        """The JSON record: the options, then the core fields (which an option never overrides)."""
        core = {
            "id": self.id,
            "revision": self.revision,
            "requested_revision": self.requested_revision,
            "source": self.source,
        }
        return {**{k: v for k, v in self.options.items() if k not in core}, **core}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """The record :meth:`to_dict` wrote (a record without ``source`` reads as ``hub``)."""
        source = data.get("source", "hub")
        if "id" not in data or source not in SOURCES:
            raise InputError(
                f"not a model record (needs an id and a source in {', '.join(SOURCES)}): {data!r}"
            )
        return cls(
            str(data["id"]),
            data.get("revision"),
            data.get("requested_revision"),
            source,
            {k: v for k, v in data.items() if k not in _CORE},
        )


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


def remember_commit(spec: ModelSpec, commit: str) -> None:
    """A download of ``spec`` resolved to ``commit``: results name it even if the branch moves on."""
    _RESOLVED[_hub_key(spec)] = commit


def is_resolved(spec: ModelSpec) -> bool:
    """Whether this process already knows the commit a download of ``spec`` resolved to."""
    return _hub_key(spec) in _RESOLVED


def remember_loaded(path: str | os.PathLike[str]) -> None:
    """A local folder is being loaded: remember its content hash as it is now."""
    real = Path(path).resolve()
    if not snapshot_commit(real):
        _LOADED[str(real)] = directory_digest(real)


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


def is_hub_id(model_id: str) -> bool:
    """``org/name``, not a path."""
    return not model_id.startswith((".", "/", "~")) and model_id.count("/") == 1


def model_provenance(spec: ModelSpec, *, resolve: bool = False, **options: Any) -> Provenance:
    """Which weights ``spec`` means, without loading the model and without the network.

    A local directory: its content hash as this process loaded it (the folder's current hash
    when it was not loaded here), or its commit when it is a hub-cache snapshot folder.
    A hub id: the commit this process's download resolved to, else the commit the requested
    revision points at in the local cache, else ``None``. ``resolve=True`` first makes sure a hub
    model's files are local (:meth:`~emoflow.models.ModelSpec.record`: a download when allowed).
    """
    if resolve:
        return spec.record(resolve=True, **options)
    opts = {**spec.options, **options}
    path = Path(spec.id).expanduser()
    if path.exists():
        real = path.resolve()
        revision = snapshot_commit(real) or _LOADED.get(str(real)) or directory_digest(path)
        return Provenance(spec.id, revision, spec.revision, "local", opts)
    if not is_hub_id(spec.id):
        return Provenance(spec.id, None, spec.revision, "local", opts)
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
