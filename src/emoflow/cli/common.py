"""What every command shares: the error console, usage errors, output checks, the thread policy."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console

from emoflow.errors import ConfigError

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True, highlight=False, soft_wrap=True)
# this run's global options (set by the app's callback, read by error handling)
state: dict[str, Any] = {"debug": False}


class UsageError(ConfigError):
    """A bad option value or combination of arguments: ``error: ...`` and exit code 2."""

    exit_code = 2


@contextmanager
def usage_errors() -> Iterator[None]:
    """Settings built from options: a :class:`ConfigError` is a usage error (exit code 2)."""
    try:
        yield
    except UsageError:
        raise
    except ConfigError as e:
        raise UsageError(str(e)) from e


def loads_models(command: F) -> F:
    """Mark a command that runs torch models: it sets the process's thread policy first (the
    entry point owns it; model loading leaves threads alone). Commands without models skip it,
    and torch's import time with it; ``--help`` never reaches it."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from emoflow import models

        models.set_cpu_threads()
        return command(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def output_formats(text: str) -> list[str]:
    """``--format``'s comma-separated list, checked (a usage error names unknown formats)."""
    from emoflow.export.writers import parse_formats

    with usage_errors():
        return parse_formats(text)


def _writable_folder(path: Path, what: str) -> None:
    """``path`` is, or can be created as, a folder we can write into: else a usage error, now."""
    p = path
    while not p.exists():
        if p.is_symlink():
            raise UsageError(f"{what} {path}: {p} is a broken symbolic link")
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        where = "is" if p == path else f"is inside {p}, which is"
        raise UsageError(f"{what} {path} {where} a file, not a folder; choose another path")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: {p} is not writable; choose another path")


def check_out_folder(out: Path) -> None:
    _writable_folder(out, "--out")


def check_out_file(out: Path | None) -> None:
    """An output file path: not a folder, in a folder we can create and write into."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    _writable_folder(out.parent, f"--out {out}: the folder")


def emit(text: str, out: Path | None) -> None:
    """``text`` to ``out`` (written atomically), or to stdout when ``out`` is None."""
    if out is None:
        sys.stdout.write(text)
    else:
        from emoflow.export.files import write_text_atomic

        write_text_atomic(out, text)
