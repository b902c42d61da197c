"""torchaudio next to a CPU torch: PyPI's Linux torchaudio wheel (2.11.0 is ``2.11.0+cu130``) is a
CUDA build whose ``_torchaudio.so`` links ``libc10_cuda.so``, so with a CPU torch ``import
torchaudio`` fails (``OSError: ... libc10_cuda.so: cannot open shared object file``), and with it
every library that imports torchaudio: FunASR (emotion2vec) and pyannote.audio. Both need only
torchaudio's pure-PyTorch parts here (emoflow passes them waveforms, never files), and torchaudio
supports running without its extension (``_IS_TORCHAUDIO_EXT_AVAILABLE = False``, pure-Python
fallbacks, a clear error from the few ops that need it); :func:`ensure_torchaudio` gives it that
state when the library file is there but cannot load. The CPU build from
download.pytorch.org/whl/cpu avoids all this.
"""

from __future__ import annotations

import logging
import sys
import types

log = logging.getLogger(__name__)

_MISSING_CUDA_LIB = ("libc10_cuda", "libtorch_cuda", "libcudart", "libnvrtc")


def ensure_torchaudio() -> bool:
    """Import torchaudio; when its native extension fails to load for want of CUDA libraries,
    import it again without the extension. Returns whether the native extension is in use.

    Any other import failure is raised as it is (ImportError when torchaudio is absent).
    """
    if "torchaudio" in sys.modules:
        return _ext_available()
    try:
        import torchaudio  # noqa: F401
    except OSError as e:
        if not any(name in str(e.__cause__ or e) for name in _MISSING_CUDA_LIB):
            raise
        log.warning(
            "torchaudio's native extension does not load (%s): a CUDA build next to a CPU torch; "
            "using torchaudio without it (FunASR and pyannote need only its pure-PyTorch parts). "
            "The CPU build from https://download.pytorch.org/whl/cpu avoids this.",
            e.__cause__ or e,
        )
        _import_without_extension()
        return False
    return _ext_available()


def _ext_available() -> bool:
    ext = sys.modules.get("torchaudio._extension")
    return bool(getattr(ext, "_IS_TORCHAUDIO_EXT_AVAILABLE", False))


def _import_without_extension() -> None:
    """Re-import torchaudio with a ``torchaudio._extension`` that reports no extension (what
    torchaudio's own module does when the library file is absent)."""
    for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
        if name != "torchaudio._internal" and not name.startswith("torchaudio._internal."):
            del sys.modules[name]
    from torchaudio._internal.module_utils import fail_with_message

    stub = types.ModuleType("torchaudio._extension")
    stub.__dict__.update(
        _IS_TORCHAUDIO_EXT_AVAILABLE=False,
        _IS_ALIGN_AVAILABLE=False,
        _check_cuda_version=lambda: None,
        _load_lib=lambda lib: False,
        fail_if_no_align=fail_with_message(
            "requires torchaudio's native extension, which does not load with this torch build."
        ),
        __all__=["_check_cuda_version", "_IS_TORCHAUDIO_EXT_AVAILABLE"],
    )
    sys.modules["torchaudio._extension"] = stub
    import torchaudio  # noqa: F401  (now without the extension)


def ensure_torchaudio_if_installed() -> None:
    """:func:`ensure_torchaudio` where torchaudio is installed (transformers' audio utilities,
    FunASR and pyannote import it when they find it); nothing, not even an import, where it is not."""
    import importlib.util

    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is None:
        return
    ensure_torchaudio()
