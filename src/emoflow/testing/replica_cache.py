"""Replicas built once per recipe, not once per test session.

Building the tiny replicas trains three tokenizers and imports FunASR: seconds on every test run
for the same few megabytes. :func:`cached_replicas` builds them once into ``CACHE/<key>``, where
the key hashes everything that decides their bytes (the size, the builder's source, a given
vocabulary, the versions of the libraries that write them); :func:`copy_replicas` gives a test
session its own copy, so a test that writes into a model folder cannot spoil the cache.

Builds go to a temporary folder renamed into place, so concurrent sessions and interrupted
builds leave either a complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from emoflow.testing import replicas
from emoflow.testing.replicas import Size, build_all

# libraries whose versions decide the files written (formats, initialisation, tokenizer training)
_LIBRARIES = ("torch", "transformers", "tokenizers", "funasr", "pyyaml")
_DONE = "recipe.json"  # written last: an entry without it is not used


def names(size: Size) -> list[str]:
    """The replica folders :func:`~emoflow.testing.replicas.build_all` writes at ``size``."""
    return ["emotion2vec", "text-emotion", "distilbert", *(["whisper"] if size == "tiny" else [])]


def recipe(size: Size = "tiny", vocab: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """What decides the replicas' bytes."""

    def version(lib: str) -> str:
        try:
            return metadata.version(lib)
        except metadata.PackageNotFoundError:
            return "absent"

    r = {
        "size": size,
        "builder": hashlib.sha256(Path(replicas.__file__).read_bytes()).hexdigest(),
        **{lib: version(lib) for lib in _LIBRARIES},
    }
    if vocab is not None:
        r["vocab"] = hashlib.sha256(Path(vocab).read_bytes()).hexdigest()
    return r


def recipe_key(size: Size = "tiny", vocab: str | os.PathLike[str] | None = None) -> str:
    blob = json.dumps(recipe(size, vocab), sort_keys=True).encode()
    return f"{size}-{hashlib.sha256(blob).hexdigest()[:16]}"


def cached_replicas(
    cache: str | os.PathLike[str], size: Size = "tiny", vocab: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """The replicas of this recipe under ``cache``, built there first if absent. Treat as read-only."""
    cache = Path(cache)
    entry = cache / recipe_key(size, vocab)
    if not (entry / _DONE).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache))
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the entry from other users sharing the cache
        try:
            build_all(tmp, size, vocab)
            (tmp / _DONE).write_text(json.dumps(recipe(size, vocab), indent=1) + "\n")
            try:
                tmp.rename(entry)
            except OSError:  # another session finished the same recipe first
                if not (entry / _DONE).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {name: entry / name for name in names(size)}


def copy_replicas(
    dest: str | os.PathLike[str],
    cache: str | os.PathLike[str],
    size: Size = "tiny",
    vocab: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """A private copy (under ``dest``) of the cached replicas of this recipe."""
    dest = Path(dest)
    return {
        name: Path(shutil.copytree(src, dest / name))
        for name, src in cached_replicas(cache, size, vocab).items()
    }
