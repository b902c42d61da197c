"""plotly.js for the reports, always offline: inlined into each report (a self-contained page),
or written once into a folder that many reports share and loaded from there by relative path.

The shared copy is named after plotly.js's version (``plotly-<version>.min.js``), so reports
written by another plotly keep the copy they were written with.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from pathlib import Path


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.min.js as bundled with the installed plotly (about 4.8 MB)."""
    import plotly.offline

    js: str = plotly.offline.get_plotlyjs()
    return js


def plotly_js_name() -> str:
    import plotly.offline

    return f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js"


def write_shared_plotly_js(assets_dir: str | os.PathLike) -> Path:
    """``assets_dir/plotly-<version>.min.js``, written if it is not there yet (atomically: a
    report never sees half a file; a file of that name with other bytes is replaced). Safe to
    call from many processes at once. Returns the file's path."""
    from emoflow.errors import ConfigError
    from emoflow.export.files import atomic_path, remove_stale_temporaries

    d = Path(assets_dir)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{d}: exists and is not a folder; choose another folder for shared assets")
    remove_stale_temporaries(d)  # left by a killed run: only emoflow's own, of dead processes
    target = d / plotly_js_name()
    data = plotly_js().encode("utf-8")
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return target
    with atomic_path(target, suffix=".js") as tmp:
        tmp.write_bytes(data)
    return target


def relative_url(target: str | os.PathLike, from_dir: str | os.PathLike) -> str:
    """The URL of ``target`` relative to a page in ``from_dir`` (``../_assets/plotly-4.1.1.min.js``);
    a ``file:`` URL where no relative path exists (another drive on Windows)."""
    target = os.path.abspath(target)
    try:
        rel = os.path.relpath(target, os.path.abspath(from_dir))
    except ValueError:
        return Path(target).as_uri()
    return urllib.parse.quote(Path(rel).as_posix())
