"""Transformers speech models as the voice branch: SER classifiers and bare encoders.

Which models (see :mod:`emoflow.speech.detect`): wav2vec2, HuBERT, WavLM, data2vec-audio and
the encoder of any Whisper, from a folder or hub id holding transformers' ``config.json``.

* **Classifiers** (``*ForSequenceClassification``, e.g. ``superb/hubert-large-superb-er``): the
  frames are what the checkpoint's head reads (its last hidden state, or its learned weighted
  sum of all hidden states); :meth:`TransformersAudioEncoder.head` is its projector and
  classifier on the mean of the valid frames — transformers' own forward, to float precision
  (the projector is linear, so it commutes with the mean). The labels go through one table,
  :data:`~emoflow.speech.labels.SER_LABELS`, to emoflow's voice names (``neu`` → ``neutral``;
  unknown ones kept).
* **Bare encoders**: embeddings only (``head`` → ``None``, ``labels == ()``): voice *scores*
  then come from a trained fusion model. ``layers`` (:class:`~emoflow.config.AudioLayers`)
  chooses the hidden states: hidden state ``L`` is the encoder's output (after its final norm
  where it has one), ``0`` the input embeddings. One hidden state is taken as it is; several
  (``mean``, ``all``, ``N,M``) are each layer-normalised per frame first (no affine; s3prl's
  SUPERB featurizer does the same), so no layer's scale dominates: on RAVDESS this gave the
  fusion classifier about +0.03 UA over raw layers (``benchmarks/bench_encoders.py``).
* **Whisper**: the encoder runs on the clip's own log-mel length — the real modules (``conv1``,
  ``conv2``, GELU, the first ``T`` positional embeddings, the layers, the final norm) without
  transformers' check that every input is 30 s — so a 3 s clip costs 3 s, not 30 (Whisper
  tiny.en on a 3.8 s RAVDESS clip: 0.085 s instead of 0.86 s, one thread of a busy 2-core
  machine; ``benchmarks/bench_encoders.py``). Frames differ
  slightly from a 30 s padded run's first frames (the padded run attends to the silence too):
  cosine of layer means 0.945-1.0 on RAVDESS clips (the last layer least). Inputs over 30 s
  are never run in one piece.
  A ``WhisperForAudioClassification`` head is not used: it was trained on the mean of all
  1500 frames of 30 s padded inputs, which a clip's own frames do not reproduce; its encoder
  gives embeddings.

Frames: 320 samples apart (wav2vec2 family: the convolutions' strides; Whisper: a 160-sample mel
hop, then a stride-2 convolution), 400 samples in a frame's field. Whether a batch of inputs of
different lengths gives each input exactly its one-by-one frames depends on the model: Whisper
(masked here) and layer-norm wav2vec2 / HuBERT / WavLM with attention masks do; group-norm
models (no attention mask) and data2vec-audio (a stack of positional convolutions that sees the
padding) do not, so they batch only inputs of equal length (the exact timeline's windows).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from emoflow.audio.io import TARGET_RATE
from emoflow.config import AudioLayers
from emoflow.errors import ConfigError, ModelError
from emoflow.inference import Inference, InferenceMethods
from emoflow.models import ModelSpec, resolve_model_dir
from emoflow.speech.detect import FLAG, METADATA, WHAT, AudioModelInfo, read_folder
from emoflow.speech.labels import voice_labels
from emoflow.stage import ModelStage

log = logging.getLogger(__name__)

FRAME_HOP = 320  # samples between frames (50 frames/s)
FRAME_FIELD = 400  # samples in one frame's field (Whisper: a frame is centred ~12 ms earlier)
WHISPER_MAX_S = 30.0  # Whisper's positional embeddings cover 1500 frames = 30 s
EXACT_PADDING: Final = ("wav2vec2", "hubert", "wavlm")  # with attention masks (layer-norm encoders)

# transformers' WavLM attention hands torch a boolean padding mask with a float position bias, and
# torch warns on every padded batch; the result is right (tested): not the user's concern
warnings.filterwarnings("ignore", "Support for mismatched key_padding_mask", UserWarning)


@dataclass
class LoadedAudio:
    """The loaded model: ``model`` is the classifier (``*ForSequenceClassification``), the bare
    encoder (``*Model``) or Whisper's encoder; ``extractor`` its feature extractor."""

    model: Any
    extractor: Any


@dataclass
class Batch:
    """One preprocessed batch: model inputs ``(B, N)`` waveforms or ``(B, 80, T)`` log-mels, the
    input mask (``None`` when nothing is padded) and the valid frames of each input."""

    inputs: Any
    mask: Any
    counts: np.ndarray


class TransformersAudioEncoder(InferenceMethods, ModelStage[LoadedAudio]):
    """A transformers speech model as a :class:`~emoflow.inference.FrameEncoder` and the voice
    branch (:class:`~emoflow.protocols.AudioEmotionModel`), through :class:`~emoflow.inference.Inference`.

    ``layers``: ``--audio-layers`` (bare encoders; a classifier takes ``last`` only).
    ``batch_size`` / ``batch_seconds`` / ``max_input_s``: as for emotion2vec (Whisper: at most 30 s).
    ``info``: what the folder holds, when the caller has read it already; ``model``: a built
    :class:`LoadedAudio` (tests).
    """

    kind = "transformers-audio"
    what = WHAT
    flag = FLAG
    required_files = ("config.json",)
    cpu_bf16 = False

    sample_rate = TARGET_RATE
    frame_hop = FRAME_HOP
    receptive_field = FRAME_FIELD

    def __init__(
        self,
        spec: ModelSpec | str,
        *,
        layers: str | AudioLayers = "last",
        batch_size: int = 8,
        batch_seconds: float = 24.0,
        max_input_s: float = 30.0,
        info: AudioModelInfo | None = None,
        model: LoadedAudio | None = None,
    ) -> None:
        spec = ModelSpec(spec) if isinstance(spec, str) else spec
        self.info = info or read_folder(self._folder(spec), spec.id)
        if self.info.kind != "transformers":
            raise ModelError(f"{WHAT} {spec.id} is emotion2vec; use emoflow.speech.make_audio_encoder")
        self.layers = self.info.check_layers(layers, spec.id)
        self.hidden = self.layers.resolve(self.info.n_layers, spec.id)
        self.whisper = self.info.model_type == "whisper"
        self.classifier = self.info.classifier
        if self.whisper and self.info.architecture == "WhisperForAudioClassification":
            log.warning(
                "%s: a Whisper classification head averages 30 s of padded frames; emoflow runs the "
                "encoder on each clip's own length, so this model gives embeddings only",
                spec.id,
            )
        super().__init__(spec, loaded=model)
        self.max_input_s = min(max_input_s, WHISPER_MAX_S) if self.whisper else max_input_s
        net = self.loaded.model
        cfg = net.config
        width = int(cfg.d_model if self.whisper else cfg.hidden_size)
        self.dim = width * len(self.hidden) if self.layers.mode == "all" else width
        if self.classifier:
            self.labels = voice_labels([str(cfg.id2label[i]) for i in range(len(cfg.id2label))])
            self.dim = width
        else:
            self.labels = ()
        rate = getattr(self.loaded.extractor, "sampling_rate", TARGET_RATE)
        if rate != TARGET_RATE:
            raise ModelError(f"{WHAT} {spec.id} reads {rate} Hz audio; emoflow gives it {TARGET_RATE} Hz")
        fe = self.loaded.extractor
        self.pads_exactly = self.whisper or (
            self.info.model_type in EXACT_PADDING and bool(getattr(fe, "return_attention_mask", False))
        )
        self.inference = Inference(self, batch_size=batch_size, batch_seconds=batch_seconds)

    @staticmethod
    def _folder(spec: ModelSpec) -> Path:
        from emoflow.speech.detect import model_folder

        return model_folder(spec)

    # ---- loading -------------------------------------------------------------------------
    def model_dir(self) -> Path:
        """The model's folder; from the hub only what transformers reads: the configs and the
        safetensors weights, or ``*.bin`` for a checkpoint without them (not TF/Flax/ONNX copies)."""
        found = resolve_model_dir(
            self.spec, self.required_files, self.what, self.flag, [*METADATA, "*.safetensors"]
        )
        if self.spec.is_local or any(found.glob("*.safetensors")):
            return found
        return resolve_model_dir(self.spec, self.required_files, self.what, self.flag, [*METADATA, "*.bin"])

    def load(self, path: Path) -> LoadedAudio:
        import transformers
        from transformers import AutoFeatureExtractor

        try:
            extractor = AutoFeatureExtractor.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise ModelError(
                f"{WHAT} {self.spec.id}: no usable feature extractor config "
                f"(preprocessor_config.json): {type(e).__name__}"
            ) from None
        kw: dict[str, Any] = {"dtype": self.dtype}
        if self.whisper:
            arch = self.info.architecture or "WhisperModel"
            cls = getattr(
                transformers, "WhisperForAudioClassification" if "Audio" in arch else "WhisperModel"
            )
            net = cls.from_pretrained(str(path), **kw).get_encoder()
        elif self.classifier:
            net = transformers.AutoModelForAudioClassification.from_pretrained(str(path), **kw)
        else:
            net = transformers.AutoModel.from_pretrained(str(path), **kw)
        return LoadedAudio(net.to(self.device).eval(), extractor)

    def options(self) -> dict[str, Any]:
        """``encoder`` (the model type) and ``layers`` (what makes the embedding): see
        :meth:`~emoflow.speech.detect.AudioModelInfo.provenance_options`."""
        return self.info.provenance_options(self.layers)

    # ---- preprocess / forward / postprocess (one batch) ----------------------------------
    def preprocess(self, waves: Sequence[np.ndarray]) -> Batch:
        """The feature extractor on each input alone (per-input normalisation and log-mel
        scaling as transformers computes them), then zero padding and masks."""
        import torch

        limit = round(WHISPER_MAX_S * self.sample_rate)
        for w in waves:
            if self.whisper and len(w) > limit:  # its positions end there (the others have none)
                raise ConfigError(
                    f"an input of {len(w) / self.sample_rate:.1f} s is over Whisper's limit of "
                    f"{WHISPER_MAX_S:g} s; use a timeline chunk and context of at most that together"
                )
        fe = self.loaded.extractor
        if self.whisper:
            feats = [
                fe(np.asarray(w, np.float32), sampling_rate=self.sample_rate, padding="longest")[
                    "input_features"
                ][0]
                for w in waves
            ]
            lengths = np.array([f.shape[-1] for f in feats])
            counts = (lengths + 1) // 2  # conv2: kernel 3, stride 2, padding 1
            x = torch.zeros(len(feats), feats[0].shape[0], int(lengths.max()))
            for i, f in enumerate(feats):
                x[i, :, : f.shape[-1]] = torch.from_numpy(np.asarray(f, np.float32))
        else:
            vals = [
                fe(np.asarray(w, np.float32), sampling_rate=self.sample_rate)["input_values"][0]
                for w in waves
            ]
            lengths = np.array([len(v) for v in vals])
            net = self.loaded.model
            counts = net._get_feat_extract_output_lengths(torch.from_numpy(lengths)).numpy()
            x = torch.full((len(vals), int(lengths.max())), float(fe.padding_value))
            for i, v in enumerate(vals):
                x[i, : len(v)] = torch.from_numpy(np.asarray(v, np.float32))
        mask = None
        if lengths.min() != lengths.max():  # 1 = a real sample (or mel frame), as transformers' masks
            mask = (torch.arange(int(lengths.max()))[None, :] < torch.from_numpy(lengths)[:, None]).long()
        return Batch(x, mask, np.asarray(counts, dtype=np.int64))

    def _forward(self, batch: Batch) -> tuple[Any, np.ndarray]:
        """Frames ``(B, T, D)`` on the CPU, float32 (run under ``inference_mode``)."""
        x = batch.inputs.to(self.device, self.dtype)
        mask = None if batch.mask is None else batch.mask.to(self.device)
        if self.whisper:
            from emoflow.speech.whisper_encoder import whisper_hidden_states

            states = whisper_hidden_states(self.loaded.model, x, mask, batch.counts, max(self.hidden))
            frames = self._combine([states[i] for i in self.hidden])
        elif self.classifier:
            frames = self._head_input(x, mask)
        else:
            frames = self._combine(self._encoder_states(x, mask))
        return frames.float().cpu(), batch.counts

    def _encoder_states(self, x: Any, mask: Any) -> list[Any]:
        """The chosen hidden states of a bare wav2vec2-family encoder (``L``: its output)."""
        net = self.loaded.model
        every = self.hidden != (self.info.n_layers,)
        out = net(x, attention_mask=mask, output_hidden_states=every)
        if not every:
            return [out.last_hidden_state]
        states = list(out.hidden_states)
        states[-1] = out.last_hidden_state  # after the final norm (transformers' own may be before)
        return [states[i] for i in self.hidden]

    def _head_input(self, x: Any, mask: Any) -> Any:
        """What a ``*ForSequenceClassification`` head reads, frame by frame (its own forward)."""
        import torch

        net = self.loaded.model
        weighted = bool(getattr(net.config, "use_weighted_layer_sum", False))
        base = getattr(net, net.base_model_prefix)
        out = base(x, attention_mask=mask, output_hidden_states=weighted)
        if not weighted:
            return out.last_hidden_state
        stacked = torch.stack(tuple(out.hidden_states), dim=1)
        w = torch.softmax(net.layer_weights, dim=-1)
        return (stacked * w.view(-1, 1, 1)).sum(dim=1)

    def _combine(self, states: list[Any]) -> Any:
        """One hidden state as it is; several each layer-normalised per frame (no affine, as
        s3prl's featurizer does for SUPERB: layers' scales differ by orders of magnitude, and
        Whisper's inner layers have a few huge dimensions), then averaged or side by side."""
        import torch
        import torch.nn.functional as F

        if len(states) == 1:
            return states[0]
        normed = [F.layer_norm(s.float(), (s.shape[-1],)) for s in states]
        if self.layers.mode == "all":
            return torch.cat(normed, dim=-1)
        return torch.stack(normed, dim=0).mean(dim=0)

    def postprocess(self, outputs: tuple[Any, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        frames, counts = outputs
        return frames.numpy(), counts

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One batch: frames ``(B, T, D)`` float32 and valid frames per input ``(B,)``. A model
        whose padding is not exact runs each length apart (see the module doc)."""
        lengths = [len(w) for w in waves]
        if self.pads_exactly or len(set(lengths)) == 1:
            result: tuple[np.ndarray, np.ndarray] = self.run(waves)
            return result
        parts = {n: self.run([w for w in waves if len(w) == n]) for n in sorted(set(lengths))}
        width = max(f.shape[1] for f, _ in parts.values())
        frames = np.zeros((len(waves), width, self.dim), np.float32)
        counts = np.zeros(len(waves), np.int64)
        seen = dict.fromkeys(parts, 0)
        for i, n in enumerate(lengths):
            f, c = parts[n]
            j = seen[n]
            seen[n] += 1
            frames[i, : f.shape[1]] = f[j]
            counts[i] = c[j]
        return frames, counts

    def head(self, embeddings: np.ndarray) -> np.ndarray | None:
        """A classifier's probabilities ``(N, L)`` from mean-pooled frames ``(N, D)``; ``None``
        for a bare encoder (no voice scores without a trained fusion model)."""
        if not self.classifier:
            return None
        import torch

        net = self.loaded.model
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(
                self.device, self.dtype
            )
            logits = net.classifier(net.projector(x)).float()
            probs: np.ndarray = torch.softmax(logits, dim=-1).cpu().numpy()
        return probs
