"""Importing pyannote.audio 4 safely: telemetry off unless asked for, and torchaudio without its
native extension when that extension cannot load.

Telemetry: pyannote.audio 4 sends OpenTelemetry spans to https://otel.pyannote.ai by default (on
pipeline load and on every call: the file's duration, the speaker counts asked for, a session id;
``pyannote/audio/telemetry/config.yaml: metrics_enabled: true``). emoflow processes recordings
offline, so :func:`prepare_pyannote_import` sets ``PYANNOTE_METRICS_ENABLED=false`` unless the user
set that variable themselves (``true`` opts in).

torchaudio: PyPI's Linux torchaudio wheel (2.11.0 is ``2.11.0+cu130``) is a CUDA build: its
``_torchaudio.so`` links ``libc10_cuda.so``, so with a CPU torch (``pip install torch==2.13.0``)
``import torchaudio`` fails with ``OSError: ... libc10_cuda.so: cannot open shared object file``, and with it
``import pyannote.audio``. The CPU build (download.pytorch.org/whl/cpu) avoids this; where only
PyPI is reachable, pyannote's diarisation still runs without the native extension, because the
parts it uses are pure PyTorch (``torchaudio.compliance.kaldi.fbank`` for the WeSpeaker front
end, ``torchaudio.functional.resample``). torchaudio itself supports running without its
extension (a missing library file: ``_IS_TORCHAUDIO_EXT_AVAILABLE = False``, pure-Python
fallbacks, a clear error from the few ops that need it); :func:`ensure_torchaudio` gives it that
state when the library file is there but cannot load.
"""

from __future__ import annotations

import os
import warnings

from emoflow.audio.torchaudio_compat import ensure_torchaudio

TELEMETRY_VAR = "PYANNOTE_METRICS_ENABLED"


def prepare_pyannote_import() -> bool:
    """Before ``import pyannote.audio``: telemetry off unless the user opted in, then
    :func:`ensure_torchaudio`. Returns whether torchaudio's native extension is in use."""
    os.environ.setdefault(TELEMETRY_VAR, "false")
    # emoflow always passes waveforms, never files: pyannote's torchcodec decoder is not used
    warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")
    return ensure_torchaudio()
