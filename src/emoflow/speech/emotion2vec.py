"""Audio emotion with emotion2vec (FunASR): whole recording, arbitrary spans, sliding-window timeline.

The model is loaded by FunASR's ``AutoModel`` (the real emotion2vec code and checkpoint
format); emoflow then drives the loaded ``nn.Module`` itself, because ``generate`` runs
one waveform at a time, wants files or unbatched arrays, and never cuts long inputs.

Inside: *preprocess* (per-input layer norm as FunASR does, zero padding, padding masks)
→ *forward* (``extract_features`` under ``inference_mode``, frame-level padding made
exact, see :func:`install_padding_hooks`) → *postprocess* (mean of the
valid frames = the utterance embedding; the classification head and a softmax = the 9
scores). Batched results equal one-by-one results to float precision.

Timeline modes (window ``window_s``, hop ``hop_s``; the final partial window included):

* ``exact``: each window goes through the model on its own (batched), exactly what
  running emotion2vec on that stretch of audio gives. Cost: about ``window_s / hop_s``
  times the audio's length (3x at 3 s / 1 s).
* ``pooled``: the recording goes through the model once, in chunks of ``chunk_s``
  seconds (default 8) with ``context_s`` (0.25) of overlap on each side; each window's
  embedding is the mean of the frames inside it, then the classification head. Cost:
  about 1.06x the audio. (On 2 CPU cores the model runs at ~0.22 of real time on 3-10 s
  inputs and ~0.35 on 30 s, so short chunks one at a time are fastest.)
  Frames see context beyond their window, so scores differ from ``exact`` (they are
  smoother); use ``exact`` to reproduce per-window emotion2vec, ``pooled`` for speed.

No input ever goes through the model in one piece longer than ``max_input_s`` (30 s):
longer inputs are cut into chunks whose frames are pooled together.

Sentence spans (:meth:`Emotion2vecEncoder.analyze`) follow the timeline: with ``pooled``
each sentence is the mean of the frames of the same one pass (so the whole voice side
costs one pass over the audio); with ``exact`` each sentence runs through the model alone.

Dtype ``auto`` runs the model in bfloat16 on CPUs with native bf16 (AVX512-BF16 / AMX),
float16 on CUDA and float32 elsewhere; pass ``dtype="float32"`` to opt out.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.config import DEFAULT_AUDIO_MODEL, TimelineConfig
from emoflow.errors import ConfigError, ModelError
from emoflow.models import (
    MODEL_CACHE,
    ModelSpec,
    resolve_device,
    resolve_dtype,
    resolve_model_dir,
)
from emoflow.types import AudioEmotion, EmotionScores, SpanMethod, Timeline, TimeSpan, VoiceAnalysis

log = logging.getLogger(__name__)

REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.txt")
FRAME_HOP = 320  # samples per frame: the conv feature encoder's total stride (50 frames/s)
FRAME_FIELD = 400  # samples in one frame's receptive field
MIN_SPAN_S = 0.25  # shorter spans are widened around their middle (the model needs context)


# The frame-level padding mask of the forward pass running in this thread (or asyncio task).
# One loaded model is shared by every encoder built on it (MODEL_CACHE) and by concurrent
# requests (the service's workers), so the mask travels per call, never through an instance.
_FRAME_VALID: contextvars.ContextVar[Any] = contextvars.ContextVar("emoflow_e2v_frame_valid", default=None)
_HOOK_LOCK = threading.Lock()
_HOOK_MARK = "_emoflow_zero_padding_hook"  # set on each convolution that carries the hook


def _zero_padded_frames(module: Any, args: tuple[Any, ...]) -> Any:
    """Forward pre-hook: zero the padded frames of the convolution's input (see
    :func:`install_padding_hooks`); a no-op outside :meth:`Emotion2vecEncoder.forward`."""
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


def window_spans(duration: float, window_s: float, hop_s: float) -> list[TimeSpan]:
    """Windows starting every ``hop_s`` until one reaches the end; the last may be shorter.

    Audio shorter than a window gives one window covering all of it.
    """
    spans = []
    k = 0
    while True:
        start = round(k * hop_s, 6)
        end = min(round(start + window_s, 6), duration)
        spans.append(TimeSpan(start, end))
        if end >= duration or start + hop_s >= duration:
            break
        k += 1
    return spans


class Emotion2vecEncoder:
    """emotion2vec stage. Loads once (per process, via the model cache) in the constructor.

    ``model`` may be an already built FunASR ``AutoModel`` (tests, notebooks).
    """

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_AUDIO_MODEL,
        *,
        batch_size: int = 8,
        max_input_s: float = 30.0,
        batch_seconds: float = 24.0,
        model: Any = None,
    ) -> None:
        self.spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.batch_size = batch_size
        self.max_input_s = max_input_s
        self.batch_seconds = batch_seconds
        self.device = resolve_device(self.spec.device)
        # auto: bfloat16 on CPUs with native bf16 (about 2x faster; scores within ~2e-3 of
        # float32, see the README), float16 on CUDA, float32 elsewhere; ``float32`` opts out.
        self.dtype = resolve_dtype(self.spec.dtype, self.device, cpu_bf16=True)
        if model is None:
            key = ("emotion2vec", self.spec.id, self.spec.revision, self.device, str(self.dtype))
            model = MODEL_CACHE.get(key, self._load)
        self.automodel = model
        self.net = model.model.eval()
        tokens = getattr(model.kwargs.get("tokenizer"), "token_list", None) or self._read_tokens()
        self.labels = tuple(english_label(t) for t in tokens)
        self._keep = np.array([not t.startswith("unuse") for t in tokens])
        self.labels = tuple(lab for lab, k in zip(self.labels, self._keep, strict=True) if k)
        if getattr(self.net, "proj", None) is None:
            raise ModelError(
                f"audio model {self.spec.id} has no classification head; use an emotion2vec "
                "plus / finetuned model (emotion2vec_base gives embeddings only)"
            )
        self.dim = int(self.net.proj.in_features)
        install_padding_hooks(self.net)
        install_fused_attention(self.net)

    # ---- loading -------------------------------------------------------------------------
    def _load(self) -> Any:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # FunASR prints notices on import
            from funasr import AutoModel

        path = resolve_model_dir(self.spec, REQUIRED_FILES, what="audio emotion model", flag="--audio-model")
        import torch

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

    # ---- preprocess / forward / postprocess ----------------------------------------------
    def preprocess(self, waves: Sequence[np.ndarray]) -> tuple[Any, Any, Any]:
        """Layer-normalise each waveform (as FunASR does), pad to one length, build masks."""
        import torch
        import torch.nn.functional as F

        lengths = [len(w) for w in waves]
        n = max(lengths)
        src = torch.zeros(len(waves), n, dtype=torch.float32)
        for i, w in enumerate(waves):
            t = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
            src[i, : len(w)] = F.layer_norm(t, t.shape)
        if min(lengths) == n:
            return src, None, None
        pad = torch.arange(n)[None, :] >= torch.tensor(lengths)[:, None]
        frames = n_frames(np.array(lengths))
        valid = torch.arange(int(n_frames(n)))[None, :] < torch.from_numpy(frames)[:, None]
        return src, pad, valid

    def forward(self, src: Any, pad: Any, valid: Any) -> Any:
        """Frame features ``(B, T, D)`` on the CPU, float32."""
        import torch

        with torch.inference_mode():
            token = _FRAME_VALID.set(None if valid is None else valid.to(self.device))
            try:
                out = self.net.extract_features(
                    src.to(self.device, self.dtype), padding_mask=None if pad is None else pad.to(self.device)
                )
            finally:
                _FRAME_VALID.reset(token)
            return out["x"].float().cpu()

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

    def postprocess(self, frames: Any, valid: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sum and count of the valid frames of each input (so chunks can be pooled later)."""
        f = frames.numpy()
        if valid is None:
            return f.sum(axis=1), np.full(len(f), f.shape[1], dtype=np.int64)
        v = valid.numpy()[:, : f.shape[1]]
        return (f * v[:, :, None]).sum(axis=1), v.sum(axis=1)

    # ---- public uses ---------------------------------------------------------------------
    def _batches(self, order: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
        """Consecutive (length-sorted) inputs, at most ``batch_size`` and ``batch_seconds`` of padded
        audio per batch: activations grow with batch x length, and on 30 s pieces a batch of 8
        would need gigabytes (the first convolution alone: 512 channels x 96k frames x 8)."""
        budget = int(self.batch_seconds * TARGET_RATE)
        batches: list[list[int]] = []
        for i in order:
            cur = batches[-1] if batches else None
            if cur is not None and len(cur) < self.batch_size and lengths[i] * (len(cur) + 1) <= budget:
                cur.append(i)
            else:
                batches.append([i])
        return batches

    def _frame_sums(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Sum and count of frames per waveform, batched by similar length."""
        sums = np.zeros((len(waves), self.dim), dtype=np.float64)
        counts = np.zeros(len(waves), dtype=np.int64)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        for idx in self._batches(order, [len(w) for w in waves]):
            src, pad, valid = self.preprocess([waves[i] for i in idx])
            s, c = self.postprocess(self.forward(src, pad, valid), valid)
            sums[idx] += s
            counts[idx] += c
        return sums, counts

    def embed(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``(N, D)`` and scores ``(N, L)`` for 16 kHz waveforms of any length.

        Waveforms longer than ``max_input_s`` are cut into pieces of at most that length;
        the embedding is the mean of all their frames.
        """
        if not waves:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, len(self.labels)), np.float32)
        limit = int(self.max_input_s * TARGET_RATE)
        pieces, owner = [], []
        for i, w in enumerate(waves):
            if len(w) < FRAME_FIELD:
                raise ConfigError(
                    f"audio input {i} is {len(w)} samples long; emotion2vec needs at least "
                    f"{FRAME_FIELD} ({FRAME_FIELD / TARGET_RATE * 1000:.0f} ms)"
                )
            n_pieces = max(1, math.ceil(len(w) / limit))
            bounds = np.linspace(0, len(w), n_pieces + 1).astype(int)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                pieces.append(w[a:b])
                owner.append(i)
        sums, counts = self._frame_sums(pieces)
        total = np.zeros((len(waves), self.dim))
        n = np.zeros(len(waves))
        np.add.at(total, owner, sums)
        np.add.at(n, owner, counts)
        emb = (total / n[:, None]).astype(np.float32)
        return emb, self.head(emb)

    def _result(self, emb: np.ndarray, scores: np.ndarray) -> AudioEmotion:
        return AudioEmotion(EmotionScores(self.labels, tuple(float(x) for x in scores)), emb)

    def utterance(self, audio: Audio) -> AudioEmotion:
        """The whole recording: mean of all frames (cut into <= 30 s pieces), then the head."""
        emb, scores = self.embed([audio.samples])
        return self._result(emb[0], scores[0])

    @staticmethod
    def _widen(audio: Audio, span: TimeSpan) -> TimeSpan:
        """Spans shorter than ``MIN_SPAN_S`` widened around their middle (within the audio)."""
        a, b = span.start, span.end
        if b - a < MIN_SPAN_S:
            mid = (a + b) / 2
            a, b = max(0.0, mid - MIN_SPAN_S / 2), min(audio.duration, mid + MIN_SPAN_S / 2)
        return TimeSpan(a, b)

    def spans(self, audio: Audio, spans: Sequence[TimeSpan]) -> list[AudioEmotion]:
        """One result per span (e.g. each sentence), each span through the model on its own
        (batched). Spans shorter than 0.25 s are widened around their middle."""
        waves = []
        for s in spans:
            w = self._widen(audio, s)
            waves.append(audio.slice(w.start, w.end))
        emb, scores = self.embed(waves)
        return [self._result(e, s) for e, s in zip(emb, scores, strict=True)]

    def analyze(
        self,
        audio: Audio,
        spans: Sequence[TimeSpan],
        config: TimelineConfig | None = None,
        span_method: SpanMethod | None = None,
    ) -> VoiceAnalysis:
        """The whole voice side of one recording: one result per span (e.g. each sentence),
        the whole recording and the timeline.

        ``span_method``: ``None`` follows the timeline's mode. ``pooled``: each span is the
        mean of the frames of the timeline's pass whose centres lie inside it, then the head,
        so with a ``pooled`` timeline the whole voice side is one pass over the audio (spans
        then see context beyond their edges, like pooled windows). ``exact``: each span runs
        through the model on its own (what emotion2vec gives on that stretch alone).
        """
        c = config or TimelineConfig()
        method: SpanMethod = span_method or ("pooled" if c.mode == "pooled" else "exact")
        if method not in ("exact", "pooled"):
            raise ConfigError(f"unknown span method {method!r}; use exact or pooled")
        if method == "exact" or not spans:
            span_results = self.spans(audio, spans) if spans else []
            utt, timeline = self.utterance_and_timeline(audio, c)
            assert utt is not None
        elif c.mode == "pooled":
            windows = window_spans(audio.duration, c.window_s, c.hop_s)
            targets = windows + [self._widen(audio, s) for s in spans]
            emb, total, count = self._pooled_windows(audio, targets, c)
            scores = self.head(emb)
            w = len(windows)
            timeline = Timeline(c.mode, c.window_s, c.hop_s, self.labels, tuple(windows), scores[:w], emb[:w])
            span_results = [self._result(e, p) for e, p in zip(emb[w:], scores[w:], strict=True)]
            mean = (total / max(count, 1)).astype(np.float32)[None, :]
            utt = self._result(mean[0], self.head(mean)[0])
        else:  # pooled spans over an exact timeline: one extra pooled pass for the spans
            emb, _, _ = self._pooled_windows(audio, [self._widen(audio, s) for s in spans], c)
            span_results = [self._result(e, p) for e, p in zip(emb, self.head(emb), strict=True)]
            utt, timeline = self.utterance_and_timeline(audio, c)
            assert utt is not None
        return VoiceAnalysis(
            tuple(span_results), utt, timeline, method, str(self.dtype).replace("torch.", "")
        )

    def timeline(self, audio: Audio, config: TimelineConfig | None = None) -> Timeline:
        return self.utterance_and_timeline(audio, config, utterance=False)[1]

    def utterance_and_timeline(
        self, audio: Audio, config: TimelineConfig | None = None, utterance: bool = True
    ) -> tuple[AudioEmotion | None, Timeline]:
        """The whole recording's result and the timeline. In ``pooled`` mode both come from
        one pass over the audio (the utterance is the mean of all its frames)."""
        c = config or TimelineConfig()
        spans = window_spans(audio.duration, c.window_s, c.hop_s)
        utt = None
        if c.mode == "exact":
            emb, scores = self.embed([audio.slice(s.start, s.end) for s in spans])
            if utterance:
                utt = self.utterance(audio)
        else:
            emb, total, count = self._pooled_windows(audio, spans, c)
            scores = self.head(emb)
            if utterance:
                mean = (total / max(count, 1)).astype(np.float32)[None, :]
                utt = self._result(mean[0], self.head(mean)[0])
        return utt, Timeline(c.mode, c.window_s, c.hop_s, self.labels, tuple(spans), scores, emb)

    def _pooled_windows(
        self, audio: Audio, spans: Sequence[TimeSpan], c: TimelineConfig
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Window embeddings from frames computed once per chunk (see the module doc).

        Chunks of ``chunk_s`` are run with ``context_s`` of audio on each side; each frame is
        taken from the chunk whose core holds its centre, so every frame is computed once
        with context on both sides. Window sums accumulate chunk by chunk, so memory stays
        bounded by one batch of chunks whatever the recording's length.
        """
        x = audio.samples
        n = len(x)
        core = int(c.chunk_s * TARGET_RATE)
        ctx = int(c.context_s * TARGET_RATE)
        starts_s = np.array([s.start for s in spans])
        ends_s = np.array([s.end for s in spans])
        sums = np.zeros((len(spans), self.dim))
        counts = np.zeros(len(spans))
        total, total_n = np.zeros(self.dim), 0
        cores = list(range(0, n, core))
        # chunks are long: on the CPU a batch of them is slower than one at a time (memory-bound)
        per_batch = self.batch_size if self.device.startswith("cuda") else 1
        for b in range(0, len(cores), per_batch):
            batch = cores[b : b + per_batch]
            waves, offsets = [], []
            for a in batch:
                lo = max(0, a - ctx)
                hi = min(n, a + core + ctx)
                if hi - lo < FRAME_FIELD:  # a tail shorter than one frame: borrow earlier audio
                    lo = max(0, hi - FRAME_FIELD)
                waves.append(x[lo:hi])
                offsets.append(lo)
            src, pad, valid = self.preprocess(waves)
            frames = self.forward(src, pad, valid).numpy()
            for j, a in enumerate(batch):
                m = int(n_frames(len(waves[j])))
                centres = (offsets[j] + np.arange(m) * FRAME_HOP + FRAME_FIELD / 2) / TARGET_RATE
                keep = (centres >= a / TARGET_RATE) & (centres < min(n, a + core) / TARGET_RATE)
                if a + core >= n:  # the last chunk keeps every frame to the end
                    keep = centres >= a / TARGET_RATE
                f, t = frames[j, :m][keep], centres[keep]
                if len(t) == 0:
                    continue
                total += f.sum(axis=0)
                total_n += len(t)
                cum = np.vstack([np.zeros((1, self.dim)), np.cumsum(f, axis=0)])
                lo_i = np.searchsorted(t, starts_s, side="left")
                hi_i = np.searchsorted(t, ends_s, side="left")
                hit = hi_i > lo_i
                sums[hit] += cum[hi_i[hit]] - cum[lo_i[hit]]
                counts[hit] += hi_i[hit] - lo_i[hit]
        empty = counts == 0
        if empty.any():  # windows too short to hold a frame centre: use the nearest window's frames
            sums[empty], counts[empty] = self._pooled_fallback(
                audio, [spans[int(i)] for i in np.flatnonzero(empty)]
            )
        return (sums / counts[:, None]).astype(np.float32), total, total_n

    def _pooled_fallback(self, audio: Audio, spans: Sequence[TimeSpan]) -> tuple[np.ndarray, np.ndarray]:
        emb = np.stack([r.embedding for r in self.spans(audio, spans)])
        return emb, np.ones(len(spans))
