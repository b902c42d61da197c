"""Audio emotion with emotion2vec (FunASR): the model stage behind the voice side.

The model is loaded by FunASR's ``AutoModel`` (the real emotion2vec code and checkpoint
format); emoflow then drives the loaded ``nn.Module`` itself, because ``generate`` runs
one waveform at a time, wants files or unbatched arrays, and never cuts long inputs.

Inside: *preprocess* (per-input layer norm as FunASR does, zero padding, padding masks)
→ *_forward* (``extract_features`` under ``inference_mode``, frame-level padding made
exact, see :func:`install_padding_hooks`) → *postprocess* (frames and their valid counts);
:meth:`Emotion2vecEncoder.head` is the classification head and a softmax over mean-pooled
frames = the 9 scores. Batched results equal one-by-one results to float precision.

What goes through the model — the whole recording, spans, the exact or pooled timeline,
batching by padded seconds, cutting inputs longer than ``max_input_s`` — is
:class:`emoflow.inference.Inference`'s (any frame-level encoder; the timeline modes are
explained there). :class:`Emotion2vecEncoder` is a :class:`~emoflow.inference.FrameEncoder`
and keeps its public methods (``utterance``, ``spans``, ``timeline``, ``analyze`` ...) by
delegating to its ``inference``.

Dtype ``auto`` runs the model in bfloat16 on CPUs with native bf16 (AVX512-BF16 / AMX),
float16 on CUDA and float32 elsewhere; pass ``dtype="float32"`` to opt out.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.audio.io import TARGET_RATE
from emoflow.config import DEFAULT_AUDIO_MODEL
from emoflow.errors import ModelError
from emoflow.inference import Inference, InferenceMethods
from emoflow.models import ModelSpec
from emoflow.stage import ModelStage

REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.txt")
FRAME_HOP = 320  # samples per frame: the conv feature encoder's total stride (50 frames/s)
FRAME_FIELD = 400  # samples in one frame's receptive field


# The frame-level padding mask of the forward pass running in this thread (or asyncio task).
# One loaded model is shared by every encoder built on it (MODEL_CACHE) and by concurrent
# requests (the service's workers), so the mask travels per call, never through an instance.
_FRAME_VALID: contextvars.ContextVar[Any] = contextvars.ContextVar("emoflow_e2v_frame_valid", default=None)
_HOOK_LOCK = threading.Lock()
_HOOK_MARK = "_emoflow_zero_padding_hook"  # set on each convolution that carries the hook


def _zero_padded_frames(module: Any, args: tuple[Any, ...]) -> Any:
    """Forward pre-hook: zero the padded frames of the convolution's input (see
    :func:`install_padding_hooks`); a no-op outside :meth:`Emotion2vecEncoder._forward`."""
    valid = _FRAME_VALID.get()
    if valid is None:
        return None
    return (args[0] * valid[:, None, :].to(args[0].dtype),) + tuple(args[1:])


def install_padding_hooks(net: Any) -> int:
    """Zero padded frames before each convolution of the positional encoder; once per model.

    emotion2vec's attention honours the padding mask but its convolutional positional
    encoder does not: without this, a padded input's last frames see the padding and
    batched results differ from one-by-one results. One waveform alone sees zeros
    there (the convolution's own padding), so zeroing makes both the same.

    The hook reads the mask of the current call from a context variable, so any number of
    encoders and threads may share ``net``. Returns how many hooks were added (0 when the
    model already has them).
    """
    import torch

    added = 0
    with _HOOK_LOCK:
        encoder = net.modality_encoders["AUDIO"]
        for mod in encoder.relative_positional_encoder.modules():
            if isinstance(mod, torch.nn.Conv1d) and not getattr(mod, _HOOK_MARK, False):
                mod.register_forward_pre_hook(_zero_padded_frames)
                setattr(mod, _HOOK_MARK, True)
                added += 1
    return added


_FAST_MARK = "_emoflow_fused_attention"  # set on each attention module given the fused forward


def _fused_attention(self: Any, x: Any, padding_mask: Any = None, alibi_bias: Any = None) -> Any:
    """FunASR's ``AltAttention.forward`` as one ``scaled_dot_product_attention`` call.

    The original upcasts every attention map to float32 to add the ALiBi bias and copies
    q, k, v and the maps several times per block: in bfloat16 on the CPU those copies cost
    more than the matrix products. Here the bias joins the fused kernel in the model's dtype.
    Used only for models held in bfloat16/float16 (float32 keeps FunASR's code unchanged);
    anything this does not cover (cosine attention, a bias over some heads) falls back.
    """
    import torch
    import torch.nn.functional as F

    b, n, c = x.shape
    h = self.num_heads
    if self.cosine_attention or (alibi_bias is not None and alibi_bias.size(1) != h):
        return type(self).forward(self, x, padding_mask, alibi_bias)
    q, k, v = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
    mask = None if alibi_bias is None else alibi_bias.to(q.dtype)
    if padding_mask is not None and padding_mask.any():
        pad = torch.zeros(b, 1, 1, n, dtype=q.dtype, device=q.device)
        pad = pad.masked_fill(padding_mask[:, None, None, :].to(torch.bool), float("-inf"))
        mask = pad if mask is None else mask + pad
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
    return self.proj(out.transpose(1, 2).reshape(b, n, c))


def prepare_funasr_import() -> None:
    """FunASR imports torchaudio: make a CUDA torchaudio wheel next to a CPU torch (what PyPI gives,
    e.g. with the pyannote extra) importable without its native extension, which emotion2vec does
    not use (:mod:`emoflow.audio.torchaudio_compat`). Nothing happens without torchaudio."""
    from emoflow.audio.torchaudio_compat import ensure_torchaudio

    with contextlib.suppress(ImportError):  # FunASR runs without torchaudio
        ensure_torchaudio()


def install_fused_attention(net: Any) -> int:
    """Give each attention module of a bfloat16/float16 model :func:`_fused_attention`; once
    per model (a float32 model is left as it is). Returns how many modules were changed."""
    import torch

    if next(net.parameters()).dtype == torch.float32:
        return 0
    from funasr.models.emotion2vec.modules import AltAttention

    changed = 0
    with _HOOK_LOCK:
        for mod in net.modules():
            if isinstance(mod, AltAttention) and not getattr(mod, _FAST_MARK, False):
                mod.forward = _fused_attention.__get__(mod)
                setattr(mod, _FAST_MARK, True)
                changed += 1
    return changed


def english_label(token: str) -> str:
    """``"生气/angry"`` → ``"angry"``; ``"<unk>"`` → ``"unknown"``."""
    if token in ("<unk>", "unk"):
        return "unknown"
    return token.split("/")[-1].strip()


def n_frames(n_samples: int | np.ndarray) -> Any:
    """Frames the feature encoder makes of ``n_samples`` (kernel/stride 10/5, 4x 3/2, 2x 2/2)."""
    n = n_samples
    for k, s in ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)):
        n = (n - k) // s + 1
    return n


@dataclass
class Batch:
    """One preprocessed batch: layer-normalised, zero-padded waveforms ``(B, N)``, the sample
    padding mask and the frame validity mask (both ``None`` when no input is padded) and the
    number of valid frames of each input."""

    src: Any
    pad: Any
    valid: Any
    counts: np.ndarray


class Emotion2vecEncoder(InferenceMethods, ModelStage[Any]):
    """emotion2vec stage. Loads once (per process, via the model cache) in the constructor.

    ``model`` may be an already built FunASR ``AutoModel`` (tests, notebooks). ``batch_size``,
    ``batch_seconds``: at most that many inputs and seconds of padded audio per forward pass;
    ``max_input_s``: longer inputs are cut into pieces whose frames are pooled.
    """

    kind = "emotion2vec"
    what = "audio emotion model"
    flag = "--audio-model"
    required_files = REQUIRED_FILES
    # auto: bfloat16 on CPUs with native bf16 (about 2x faster; scores within ~2e-3 of
    # float32, see the README), float16 on CUDA, float32 elsewhere; ``float32`` opts out.
    cpu_bf16 = True

    sample_rate = TARGET_RATE
    frame_hop = FRAME_HOP
    receptive_field = FRAME_FIELD

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_AUDIO_MODEL,
        *,
        batch_size: int = 8,
        max_input_s: float = 30.0,
        batch_seconds: float = 24.0,
        model: Any = None,
    ) -> None:
        super().__init__(spec, loaded=model)
        self.max_input_s = max_input_s
        self.net = self.loaded.model.eval()
        tokens = getattr(self.loaded.kwargs.get("tokenizer"), "token_list", None) or self._read_tokens()
        self._keep = np.array([not t.startswith("unuse") for t in tokens])
        self.labels = tuple(english_label(t) for t, k in zip(tokens, self._keep, strict=True) if k)
        if getattr(self.net, "proj", None) is None:
            raise ModelError(
                f"audio model {self.spec.id} has no classification head; use an emotion2vec "
                "plus / finetuned model (emotion2vec_base gives embeddings only)"
            )
        self.dim = int(self.net.proj.in_features)
        install_padding_hooks(self.net)
        install_fused_attention(self.net)
        self.inference = Inference(self, batch_size=batch_size, batch_seconds=batch_seconds)

    @property
    def automodel(self) -> Any:
        """The FunASR ``AutoModel`` (its ``generate`` is FunASR's own reference)."""
        return self.loaded

    # ---- loading -------------------------------------------------------------------------
    def load(self, path: Path) -> Any:
        import torch

        with contextlib.redirect_stdout(io.StringIO()):  # FunASR prints notices on import
            prepare_funasr_import()
            from funasr import AutoModel

        # FunASR sets torch's threads to its ncpu while it builds the model: hand it the caller's
        # count and put that back whatever happens (thread policy is the entry point's, see models.py)
        threads = torch.get_num_threads()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model = AutoModel(
                    model=str(path),
                    disable_update=True,
                    device=self.device,
                    disable_pbar=True,
                    log_level="ERROR",
                    ncpu=threads,
                )
        finally:
            torch.set_num_threads(threads)
        if self.dtype != torch.float32:
            model.model.to(self.dtype)
        return model

    def _read_tokens(self) -> list[str]:
        path = Path(self.spec.id) / "tokens.txt"
        return [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]

    # ---- preprocess / forward / postprocess (one batch) ----------------------------------
    def preprocess(self, waves: Sequence[np.ndarray]) -> Batch:
        """Layer-normalise each waveform (as FunASR does), pad to one length, build masks."""
        import torch
        import torch.nn.functional as F

        lengths = [len(w) for w in waves]
        n = max(lengths)
        src = torch.zeros(len(waves), n, dtype=torch.float32)
        for i, w in enumerate(waves):
            t = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
            src[i, : len(w)] = F.layer_norm(t, t.shape)
        counts = np.asarray(n_frames(np.array(lengths)), dtype=np.int64)
        if min(lengths) == n:
            return Batch(src, None, None, counts)
        pad = torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]
        valid = torch.arange(int(n_frames(n)))[None, :] < torch.from_numpy(counts)[:, None]
        return Batch(src, pad, valid, counts)

    def _forward(self, batch: Batch) -> tuple[Any, np.ndarray]:
        """Frame features ``(B, T, D)`` on the CPU, float32 (run under ``inference_mode``)."""
        token = _FRAME_VALID.set(None if batch.valid is None else batch.valid.to(self.device))
        try:
            out = self.net.extract_features(
                batch.src.to(self.device, self.dtype),
                padding_mask=None if batch.pad is None else batch.pad.to(self.device),
            )
        finally:
            _FRAME_VALID.reset(token)
        return out["x"].float().cpu(), batch.counts

    def postprocess(self, outputs: tuple[Any, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        frames, counts = outputs
        return frames.numpy(), counts

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One batch: frames ``(B, T, D)`` float32 and valid frames per input ``(B,)``."""
        result: tuple[np.ndarray, np.ndarray] = self.run(waves)
        return result

    def head(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, L)`` from mean-pooled embeddings ``(N, D)``."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(
                self.device, self.dtype
            )
            logits = self.net.proj(x).float()
            logits[:, torch.from_numpy(~self._keep)] = -math.inf
            probs = torch.softmax(logits, dim=-1).cpu().numpy()
        return probs[:, self._keep]
