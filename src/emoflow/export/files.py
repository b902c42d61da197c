"""Atomic file writing: a reader never sees a partial output file.

Temporaries are created beside their target under a name only emoflow uses
(``.emoflow-tmp.<host>.<pid>.<random>.<target name>``), so a later run can remove the
ones a killed run left behind (:func:`remove_stale_temporaries`) without ever touching
anything else. Finished files and folders get the usual modes (0666/0777 less the
umask), not the private 0600/0700 that :mod:`tempfile` creates temporaries with.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".emoflow-tmp."


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _temp_prefix() -> str:
    return f"{TEMP_MARK}{_host_tag()}.{os.getpid()}."


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like one of emoflow's own temporaries."""
    return Path(path).name.startswith(TEMP_MARK)


def _stale(name: str) -> bool:
    """An emoflow temporary of this host whose process is gone (one of another host: never)."""
    try:
        host, pid_text, _ = name[len(TEMP_MARK) :].split(".", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != _host_tag() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: the process exists
        return False
    return False


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed emoflow runs left directly in ``directory``.

    Only entries named like emoflow's own temporaries (``.emoflow-tmp.``...), made on this
    host by a process that no longer runs, are removed; nothing else is ever touched.
    Returns what was removed.
    """
    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if not (p.name.startswith(TEMP_MARK) and _stale(p.name)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    ``suffix`` ends the temporary's name (some writers add an extension when it is missing).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=_temp_prefix(), suffix=f".{target.name}{suffix or '.tmp'}", dir=target.parent
    )
    os.close(fd)
    try:
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; the result is an ordinary file
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (a folder, if
    any) in one rename, on error it is removed. The old folder is removed after the swap."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        from emoflow.errors import ConfigError

        raise ConfigError(f"{target}: exists and is not a folder; choose another output path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=f".{target.name}", dir=target.parent))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp makes 0700; the result is an ordinary folder
        yield tmp
        if target.exists():
            old = target.with_name(f"{_temp_prefix()}{secrets.token_hex(4)}.old.{target.name}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[IO[str]], Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        write(f)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
