"""The output folder of a batch: created and checked before any work, and held by one batch at
a time (an OS file lock on ``DIR/.emoflow-lock``, released by the OS however the run ends)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from emoflow.errors import InputError

LOCK = ".emoflow-lock"

_held: dict[Path, tuple[int, int, int]] = {}  # locked folder -> (fd, depth, owning thread)
_held_guard = threading.Lock()


def prepare_out(out: str | os.PathLike[str]) -> Path:
    """The output folder, created; :class:`InputError` at once when it cannot be one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"{out}: cannot create the output folder ({e.strerror or e}); choose another --out"
        ) from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: not writable; choose another --out")
    return out


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``out`` for one batch: a second batch into the same folder (another process, or
    another thread) fails at once with :class:`InputError` naming the folder.

    The lock is an OS file lock on ``out/.emoflow-lock``: the OS releases it when the process
    ends, however it ends, so a killed run never leaves the folder locked. Re-entrant within
    one thread (the CLI may take it before loading models, the runner takes it again).
    """
    out = Path(out)
    key = out.resolve()
    me = threading.get_ident()
    with _held_guard:
        if key in _held:
            fd, depth, owner = _held[key]
            if owner != me:
                raise InputError(f"{out}: another batch in this process is writing into it; wait for it")
            _held[key] = (fd, depth + 1, owner)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                fd, depth, owner = _held[key]
                _held[key] = (fd, depth - 1, owner)
        return
    path = out / LOCK
    for _ in range(20):  # the file may be removed by the holder between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise InputError(
                f"{out}: another emoflow batch (pid {pid}) is writing into this folder; "
                "wait for it to finish or choose another --out"
            )
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise InputError(f"{out}: could not lock {path}; check the folder is writable")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _held_guard:
            _held[key] = (fd, 1, me)
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        try:
            # removed while still locked, so nobody can lock a file that is about to go
            with suppress(OSError):  # Windows cannot remove an open file: it stays, unlocked
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
