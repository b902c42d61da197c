"""The GE2E speaker encoder whose pretrained weights ship in the ``resemblyzer`` wheel.

``resemblyzer`` (Apache-2.0) packages ``pretrained.pt``: a 3-layer LSTM (256 units) + linear
projection trained with the generalised end-to-end loss (Wan et al. 2018) on 40-band mel
spectrograms (25 ms windows, 10 ms hop, 16 kHz), giving 256-d L2-normalised embeddings.

emoflow loads that file but never imports the ``resemblyzer`` package: its ``__init__`` imports
``webrtcvad``, whose module imports ``pkg_resources``, which setuptools >= 81 (and fresh Python
3.12 venvs, which have no setuptools) no longer provide. The network below is the same
``nn.Module`` layout (``lstm``, ``linear``), so the state dict loads strictly; the mel front end is
resemblyzer's (``librosa.feature.melspectrogram``, power, not log) and its volume normalisation.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.errors import ModelError, ModelUnavailableError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MEL_WINDOW_SAMPLES = 400  # 25 ms
MEL_HOP_SAMPLES = 160  # 10 ms: 100 frames per second
MEL_CHANNELS = 40
FRAMES_PER_SECOND = SAMPLE_RATE // MEL_HOP_SAMPLES
TRAINING_WINDOW_FRAMES = 160  # the partial-utterance length GE2E was trained on (1.6 s)
HIDDEN = 256
EMBEDDING_DIM = 256
LAYERS = 3
NORM_TARGET_DBFS = -30.0  # resemblyzer's volume target (raised only, never lowered)
WEIGHTS_FILE = "pretrained.pt"
DISTRIBUTION = "resemblyzer"
INSTALL_HINT = "install it with `pip install 'emoflow[diarization]'` (or `pip install resemblyzer`)"


def packaged_weights() -> Path:
    """The ``pretrained.pt`` inside the installed ``resemblyzer`` package, found without importing
    the package; :class:`ModelUnavailableError` naming the fix when it is not installed."""
    spec = importlib.util.find_spec(DISTRIBUTION)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / WEIGHTS_FILE
        if p.is_file():
            return p
    raise ModelUnavailableError(
        f"the offline speaker encoder needs the GE2E weights of the `resemblyzer` package, "
        f"which is not installed; {INSTALL_HINT}"
    )


def build_encoder() -> Any:
    """An untrained GE2E network (``torch.nn.Module``): ``(batch, frames, 40)`` mels → ``(batch, 256)``."""
    import torch
    from torch import nn

    class GE2E(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(MEL_CHANNELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, EMBEDDING_DIM)
            self.relu = nn.ReLU()

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = self.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    return GE2E()


def load_encoder(weights: str | Path, device: str = "cpu") -> Any:
    """The GE2E network with ``weights`` (a resemblyzer-format checkpoint), in eval mode on ``device``."""
    import torch

    path = Path(weights)
    if not path.is_file():
        raise ModelUnavailableError(f"speaker encoder weights {path}: no such file; {INSTALL_HINT}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ModelError(f"speaker encoder weights {path} cannot be read ({type(e).__name__}: {e})") from e
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"speaker encoder weights {path}: no `model_state` dict inside")
    # resemblyzer's checkpoint also holds the GE2E loss' similarity scale (similarity_weight/bias)
    state = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    model = build_encoder()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"speaker encoder weights {path} do not fit the GE2E network: {e}") from e
    return model.to(device).eval()


def normalize_volume(samples: np.ndarray, target_dbfs: float = NORM_TARGET_DBFS) -> np.ndarray:
    """Raise the level to ``target_dbfs`` (RMS), never lower it — resemblyzer's preprocessing."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return x
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms <= 1e-10:
        return x
    change_db = target_dbfs - 20.0 * np.log10(rms)
    return x if change_db < 0 else (x * np.float32(10 ** (change_db / 20.0))).astype(np.float32)


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """``(frames, 40)`` float32 power mel spectrogram; frame ``i`` is centred on ``i / 100`` s."""
    import librosa

    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return np.zeros((0, MEL_CHANNELS), dtype=np.float32)
    mel = librosa.feature.melspectrogram(
        y=x, sr=SAMPLE_RATE, n_fft=MEL_WINDOW_SAMPLES, hop_length=MEL_HOP_SAMPLES, n_mels=MEL_CHANNELS
    )
    return np.ascontiguousarray(mel.T, dtype=np.float32)
