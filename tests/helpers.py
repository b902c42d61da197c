"""What tests share besides fixtures: where the shared data lives, how to run the command line,
small builders. Fixtures live in ``conftest.py``; test modules import from here, never from
each other or from ``conftest``.

``../shared`` (the speech recordings with their truth, the real Whisper tiny.en) is optional:
:func:`need_shared` skips a test with a reason when it is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()
WHISPER_TINY = SHARED / "models" / "whisper-tiny.en"
SPEECH_DIR = SHARED / "audio" / "speech"

# Debian's headless Chromium, for the report and service pages in a real browser (Playwright)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


# ---- shared data ---------------------------------------------------------------------------------


def need_shared(*parts: str) -> Path:
    """``../shared/PARTS``, or skip the calling test when this checkout lacks it."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs ../shared/{'/'.join(parts)} (not present in this checkout)")
    return p


def speech_files() -> list[Path]:
    """The synthetic speech recordings (each with a ``.truth.json``); empty without ``../shared``."""
    if not SPEECH_DIR.exists():
        return []
    return sorted(p for p in SPEECH_DIR.iterdir() if p.suffix in (".wav", ".flac"))


def truth_for(audio: Path) -> dict[str, Any]:
    """The exact sentences (text, start, end) and format of a recording from :func:`speech_files`."""
    data: dict[str, Any] = json.loads(audio.with_name(audio.stem + ".truth.json").read_text())
    return data


def boundary_error(pred: list[tuple[float, float]], truth: list[tuple[float, float]]) -> float:
    """Mean distance (s) from each predicted start/end to the nearest true start/end.

    Boundary matching rather than sentence pairing, so that an ASR that merges two
    spoken sentences into one is judged on the boundaries it does place.
    """
    starts = [t[0] for t in truth]
    ends = [t[1] for t in truth]
    errs = [min(abs(s - x) for x in starts) for s, _ in pred] + [
        min(abs(e - x) for x in ends) for _, e in pred
    ]
    return sum(errs) / len(errs)


# ---- the command line ----------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``emoflow ARGS`` in a fresh Python process: what a user gets (exit code, stdout, stderr).

    Each call pays Python's and torch's import (seconds): use it where the process matters (exit
    codes of the real entry point, signals, process-wide state); else :func:`run_cli_in_process`.
    """
    return subprocess.run(
        [sys.executable, "-m", "emoflow", *args], capture_output=True, text=True, timeout=timeout
    )


# Python's own warning filters (``python -W`` unset), what a fresh ``emoflow`` process starts with
_DEFAULT_WARNING_FILTERS: list[tuple[str, type[Warning], str]] = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def run_cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``emoflow ARGS`` through :func:`emoflow.cli.run` in this process, as :func:`run_cli` returns it.

    The process-wide state the command line sets is reset around the call, so runs do not see
    each other or the test session: the root logger's handlers and level (the CLI's
    ``basicConfig`` writes to the captured stderr), the warning filters and ``showwarning``, the
    environment variables it sets. The entry point's thread policy (``set_cpu_threads``) is
    skipped: the session's torch thread count holds (one, see ``conftest.py``), as in any program
    that embeds the library. Loaded models stay in ``MODEL_CACHE`` (keyed by folder, so a run
    loads the same weights a fresh process would): with the imports, the time saved.
    """
    from emoflow import cli, models

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    environ = dict(os.environ)
    set_cpu_threads = models.set_cpu_threads
    models.set_cpu_threads = lambda n=None: None
    root.handlers = []  # else basicConfig is a no-op and logs go to pytest's handlers
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            for action, category, module in reversed(_DEFAULT_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)  # type: ignore[arg-type]
            code = cli.run(list(args))
    finally:
        for h in root.handlers:
            h.close()
        root.handlers = handlers
        root.setLevel(level)
        for k in set(os.environ) - set(environ):
            del os.environ[k]
        os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})
        models.set_cpu_threads = set_cpu_threads
    return subprocess.CompletedProcess(["emoflow", *args], code, out.getvalue(), err.getvalue())


# ---- audio builders ------------------------------------------------------------------------------


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A 440 Hz (``freq``) sine at 0.3 amplitude; shape (n,) or (n, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def lying_flac(path: Path, seconds: float = 2.0, claimed: int = (1 << 36) - 1) -> Path:
    """A small FLAC whose STREAMINFO claims ``claimed`` samples (2^36 - 1: ~50 days at 16 kHz)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(seconds, 16000), 16000, format="FLAC")
    b = bytearray(buf.getvalue())
    assert b[:4] == b"fLaC"
    # STREAMINFO body from byte 8; bytes 18..25: rate (20 bits), channels-1 (3), bps-1 (5), samples (36)
    v = int.from_bytes(b[18:26], "big")
    v = (v & ~((1 << 36) - 1)) | claimed
    b[18:26] = v.to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path
