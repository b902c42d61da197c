"""The offline diarisation backend: Silero VAD → GE2E speaker embeddings → clustering.

No hub and no token: the speaker encoder's weights ship inside the ``resemblyzer`` wheel
(:mod:`emoflow.diarization.ge2e`), the VAD's inside ``silero-vad``.

How a recording is diarised (each step chosen on synthetic conversations, see the notes in
``docs/performance.md``):

1. **Speech**: the caller's speech regions, or Silero VAD with a lower threshold than the
   pipeline's (0.35, 100 ms padding): missed speech counts fully in DER, and GE2E is robust to a
   little silence around a turn.
2. **Segments**: each region, cut into equal pieces of at most ``max_segment_s`` when longer,
   so a speaker change inside a long region can be found.
3. **Loudness**: each segment is raised to -30 dBFS (resemblyzer's own preprocessing, applied
   per segment rather than per file). GE2E reads *power* mel spectrograms, so loud (angry,
   excited) and quiet (sad) turns of one person otherwise look like different voices: per-segment
   normalisation cut DER on the synthetic set from 0.26 to 0.17 with the true count.
4. **Embeddings**: GE2E over windows of ``window_s`` (2 s) every ``hop_s`` (1 s) inside each
   segment (a shorter segment is one window of its own length), all windows in one packed batch;
   a segment's embedding is the normalised mean of its windows'.
5. **Clustering** (:func:`emoflow.diarization.clustering.cluster_speakers`): the count given,
   or estimated. Optional ``nuisance``: a ``.npy`` of directions (``(r, 256)``, from
   :func:`~emoflow.diarization.clustering.nuisance_directions` over clips of labelled speakers,
   e.g. an emotional corpus you hold a licence for) projected out of every embedding first;
   :meth:`OfflineDiarizerConfig.with_nuisance` pairs it with the clustering settings tuned for it.
6. **Re-segmentation**: inside a region whose pieces went to different speakers, every window
   is given to the nearest of those speakers' centroids and the change is placed where the
   windows' votes change, instead of at an arbitrary piece boundary.

Overlapping speech gets a single speaker (the one whose voice dominates the window).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.audio.vad import SpeechDetector, VadConfig
from emoflow.diarization import ge2e
from emoflow.diarization.base import check_speaker_count
from emoflow.diarization.clustering import (
    NUISANCE_CLUSTERING,
    ClusteringConfig,
    cluster_speakers,
    load_nuisance,
    normalize_rows,
    project_out,
)
from emoflow.diarization.types import Diarization, SpeakerTurn, speaker_label
from emoflow.errors import AudioError, ConfigError
from emoflow.inference.windows import window_spans
from emoflow.models import ModelSpec, one_cpu_thread
from emoflow.protocols import SpeechRegions
from emoflow.provenance import Provenance, directory_digest, package_provenance
from emoflow.stage import ModelStage
from emoflow.types import TimeSpan, seconds_to_samples

log = logging.getLogger(__name__)

BACKEND = "ge2e"
MODEL_ID = "resemblyzer/pretrained.pt"


@dataclass(frozen=True)
class OfflineDiarizerConfig:
    """Settings of :class:`OfflineDiarizer` (seconds throughout)."""

    window_s: float = 2.0
    hop_s: float = 1.0
    max_segment_s: float = 3.0
    min_segment_s: float = 0.05  # speech regions shorter than this are dropped
    min_turn_s: float = 0.5  # re-segmentation: shorter flips inside a region are merged away
    batch_size: int = 128
    # The LSTM steps through time with small matrices: one thread does it in ~0.012 s of CPU per
    # second of audio, while two threads on two busy cores took 30x longer (OpenMP spin-waits).
    single_thread: bool = True
    vad: VadConfig = field(default_factory=lambda: VadConfig(threshold=0.35, speech_pad_ms=100))
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    nuisance: str | None = None  # .npy of (r, 256) directions projected out before clustering

    @classmethod
    def with_nuisance(cls, path: str | Path | None, **kwargs: Any) -> OfflineDiarizerConfig:
        """The settings tuned for nuisance projection (1.5 s windows every 0.75 s, the clustering
        of :data:`NUISANCE_CLUSTERING`) with the directions in ``path``. Learn the directions
        with these same settings: ``path=None`` gives them without a projection."""
        defaults: dict[str, Any] = {"window_s": 1.5, "hop_s": 0.75, "clustering": NUISANCE_CLUSTERING}
        return cls(nuisance=None if path is None else str(path), **{**defaults, **kwargs})

    def __post_init__(self) -> None:
        if not (0 < self.hop_s <= self.window_s):
            raise ConfigError(f"need 0 < hop_s <= window_s, got hop {self.hop_s}, window {self.window_s}")
        if self.max_segment_s < self.window_s:
            raise ConfigError(
                f"max_segment_s ({self.max_segment_s}) must be at least window_s ({self.window_s})"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SpeechPiece:
    """A piece of a speech region (long regions are cut into equal pieces) and its windows."""

    span: TimeSpan
    region: int  # index of the speech region it was cut from
    windows: tuple[int, ...]  # indexes into the window list


class OfflineDiarizer(ModelStage[Any]):
    """Diarisation with the GE2E encoder shipped in ``resemblyzer`` (see the module docstring).

    ``weights``: a resemblyzer-format checkpoint; default the one in the installed package
    (:class:`~emoflow.errors.ModelUnavailableError` naming ``pip install 'emoflow[diarization]'``
    when it is not installed). ``model``: an already-built GE2E ``nn.Module`` (tests).
    ``vad``: speech regions to use when none are passed in (e.g. the pipeline's
    :class:`SpeechDetector`); a Silero VAD with ``config.vad`` is built on first need otherwise.
    The encoder loads in the constructor, through the model cache.
    """

    name = BACKEND
    kind = "ge2e"
    what = "GE2E speaker encoder"
    flag = "--diarization-model"

    def __init__(
        self,
        config: OfflineDiarizerConfig | None = None,
        *,
        weights: str | Path | None = None,
        device: str = "auto",
        model: Any = None,
        vad: SpeechRegions | None = None,
    ) -> None:
        self.config = config or OfflineDiarizerConfig()
        self._weights = None if weights is None else Path(weights).expanduser()
        self._vad = vad
        self._vad_lock = threading.Lock()
        self.nuisance = load_nuisance(self.config.nuisance, ge2e.EMBEDDING_DIM)
        spec_id = MODEL_ID if self._weights is None else str(self._weights)
        super().__init__(ModelSpec(spec_id, device=device, dtype="float32"), loaded=model)

    def _weights_path(self) -> Path:
        return self._weights if self._weights is not None else ge2e.packaged_weights()

    def cache_key(self) -> Any:
        return (self.kind, str(self._weights_path().resolve()), self.device)

    def _load(self) -> Any:
        return ge2e.load_encoder(self._weights_path(), self.device)

    @property
    def model(self) -> Any:
        return self.loaded

    def options(self) -> dict[str, Any]:
        out = {"backend": BACKEND, **_flat(self.config.to_dict())}
        if self.config.nuisance is not None:
            out["nuisance_sha256"] = directory_digest(Path(self.config.nuisance))
        return out

    def provenance(self) -> Provenance:
        """The weights (the package's version, or the file's content hash) and the settings that
        change the result; loads nothing and needs no import of ``resemblyzer``."""
        if self._weights is None:
            return package_provenance(MODEL_ID, ge2e.DISTRIBUTION, **self.options())
        revision = directory_digest(self._weights) if self._weights.exists() else None
        return Provenance(str(self._weights), revision, None, "local", self.options())

    # -- the stage ----------------------------------------------------------------------------

    def __call__(
        self,
        audio: Audio,
        speech: Sequence[TimeSpan] | None = None,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> Diarization:
        """Who spoke when in ``audio`` (see :class:`~emoflow.diarization.base.Diarizer`)."""
        count = check_speaker_count(num_speakers, min_speakers, max_speakers)
        if audio.sample_rate != TARGET_RATE:
            raise AudioError(
                f"diarisation needs {TARGET_RATE} Hz audio (load_audio gives it), got {audio.sample_rate}"
            )
        regions = self.preprocess_regions(audio, speech)
        backend: dict[str, Any] = {
            "backend": BACKEND,
            "model": self.provenance().to_dict(),
            **count.to_dict(),
        }
        if not regions:
            return Diarization((), (), {**backend, "estimated_speakers": 0})
        segments, windows = self.speech_windows(regions)
        embeddings = self.embed(audio, segments, windows)
        if self.nuisance is not None:
            embeddings = project_out(embeddings, self.nuisance)
        seg_emb = normalize_rows(np.stack([embeddings[list(s.windows)].mean(axis=0) for s in segments]))
        lo, hi = count.bounds()
        result = cluster_speakers(
            seg_emb,
            num_speakers=count.exact,
            min_speakers=lo,
            max_speakers=hi,
            config=self.config.clustering,
        )
        turns = self.make_turns(regions, segments, windows, embeddings, result.labels)
        backend["clustering"] = result.to_dict()
        backend["estimated_speakers"] = result.num_speakers
        return Diarization.from_turns(turns, backend)

    def preprocess_regions(self, audio: Audio, speech: Sequence[TimeSpan] | None) -> list[TimeSpan]:
        """Speech regions clipped to the recording, sorted, overlaps merged, tiny ones dropped."""
        if speech is None:
            speech = self._detector()(audio) if len(audio.samples) else []
        dur = audio.duration
        spans = sorted(
            (TimeSpan(max(0.0, s.start), min(dur, s.end)) for s in speech if s.start < dur and s.end > 0),
            key=lambda s: s.start,
        )
        merged: list[TimeSpan] = []
        for s in spans:
            if merged and s.start <= merged[-1].end:
                merged[-1] = TimeSpan(merged[-1].start, max(merged[-1].end, s.end))
            else:
                merged.append(s)
        return [s for s in merged if s.duration >= self.config.min_segment_s]

    def _detector(self) -> SpeechRegions:
        with self._vad_lock:
            if self._vad is None:
                self._vad = SpeechDetector(self.config.vad)
            return self._vad

    def speech_windows(self, regions: Sequence[TimeSpan]) -> tuple[list[SpeechPiece], list[TimeSpan]]:
        """Regions → segments (long regions cut into equal pieces) → windows inside each segment."""
        c = self.config
        segments: list[SpeechPiece] = []
        windows: list[TimeSpan] = []
        for r_i, r in enumerate(regions):
            pieces = max(1, math.ceil(r.duration / c.max_segment_s - 1e-9))
            step = r.duration / pieces
            for p in range(pieces):
                seg = TimeSpan(r.start + p * step, r.end if p == pieces - 1 else r.start + (p + 1) * step)
                first = len(windows)
                windows.extend(_windows(seg, c.window_s, c.hop_s))
                segments.append(SpeechPiece(seg, r_i, tuple(range(first, len(windows)))))
        return segments, windows

    def embed(self, audio: Audio, segments: Sequence[SpeechPiece], windows: Sequence[TimeSpan]) -> np.ndarray:
        """``(len(windows), 256)`` GE2E embeddings; each segment loudness-normalised on its own."""
        mels: list[np.ndarray] = [np.zeros((0, ge2e.MEL_CHANNELS), np.float32)] * len(windows)
        for seg in segments:
            samples = audio.slice(seg.span.start, seg.span.end)
            mel = ge2e.mel_frames(ge2e.normalize_volume(samples))
            for w_i in seg.windows:
                w = windows[w_i]
                a = seconds_to_samples(w.start - seg.span.start, ge2e.FRAMES_PER_SECOND)
                b = seconds_to_samples(w.end - seg.span.start, ge2e.FRAMES_PER_SECOND)
                a = min(max(0, a), max(0, len(mel) - 1))
                mels[w_i] = mel[a : max(a + 1, min(len(mel), b))]
        out = np.zeros((len(windows), ge2e.EMBEDDING_DIM), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: -len(mels[i]))
        bs = self.config.batch_size
        for k in range(0, len(order), bs):
            idx = order[k : k + bs]
            out[idx] = self.run([mels[i] for i in idx])
        return out

    def embed_spans(self, audio: Audio, spans: Sequence[TimeSpan]) -> np.ndarray:
        """One embedding per span (the normalised mean of its windows'), e.g. of labelled clips to
        learn nuisance directions from; no VAD, no projection."""
        segments, windows = self.speech_windows(spans)
        emb = self.embed(audio, segments, windows)
        per_span = [[s for s in segments if s.region == i] for i in range(len(spans))]
        means = [emb[[w for s in ss for w in s.windows]].mean(axis=0) for ss in per_span]
        return normalize_rows(np.stack(means))

    def preprocess(self, inputs: Any) -> Any:
        """Mel windows (longest first) → one packed batch on the device."""
        import torch
        from torch.nn.utils.rnn import pack_sequence

        return pack_sequence([torch.from_numpy(np.ascontiguousarray(m)).to(self.device) for m in inputs])

    def _forward(self, batch: Any) -> Any:
        with one_cpu_thread(self.config.single_thread and self.device == "cpu"):
            return self.model(batch)

    def postprocess(self, outputs: Any) -> Any:
        """Embeddings as a float32 array, one row per window, in the batch's order."""
        return outputs.float().cpu().numpy()

    def make_turns(
        self,
        regions: Sequence[TimeSpan],
        segments: Sequence[SpeechPiece],
        windows: Sequence[TimeSpan],
        embeddings: np.ndarray,
        labels: np.ndarray,
    ) -> list[SpeakerTurn]:
        """Segment labels → turns; regions whose pieces disagree are re-segmented window by window."""
        k = int(labels.max()) + 1 if len(labels) else 0
        seg_emb = normalize_rows(np.stack([embeddings[list(s.windows)].mean(axis=0) for s in segments]))
        centroids = normalize_rows(np.stack([seg_emb[labels == j].mean(axis=0) for j in range(k)]))
        turns: list[SpeakerTurn] = []
        for r_i, region in enumerate(regions):
            segs = [(s, int(lab)) for s, lab in zip(segments, labels) if s.region == r_i]
            present = sorted({lab for _, lab in segs})
            if len(present) == 1:
                turns.append(SpeakerTurn(region, speaker_label(present[0])))
                continue
            win_ids = [w for s, _ in segs for w in s.windows]
            sims = normalize_rows(embeddings[win_ids]) @ centroids[present].T
            turns.extend(self.resegment(region, [windows[w] for w in win_ids], sims, present))
        return turns

    def resegment(
        self, region: TimeSpan, wins: Sequence[TimeSpan], sims: np.ndarray, present: Sequence[int]
    ) -> list[SpeakerTurn]:
        """Per 10 ms frame of ``region``, the speaker whose centroid the covering windows are
        closest to (summed similarity); runs shorter than ``min_turn_s`` merged into a neighbour."""
        fps = ge2e.FRAMES_PER_SECOND
        n = max(1, seconds_to_samples(region.duration, fps))
        votes = np.zeros((n, len(present)))
        for w, s in zip(wins, sims):
            a = max(0, seconds_to_samples(w.start - region.start, fps))
            b = min(n, max(a + 1, seconds_to_samples(w.end - region.start, fps)))
            votes[a:b] += s
        frame_lab = votes.argmax(axis=1)
        runs = _runs(frame_lab.tolist())
        min_frames = max(1, seconds_to_samples(self.config.min_turn_s, fps))
        runs = _absorb_short(runs, min_frames)
        out = []
        for a, b, lab in runs:
            start = region.start + a / fps
            end = region.end if b >= n else region.start + b / fps
            out.append(SpeakerTurn(TimeSpan(start, max(start, end)), speaker_label(present[lab])))
        return out


def _windows(seg: TimeSpan, window_s: float, hop_s: float) -> list[TimeSpan]:
    """Windows of ``window_s`` every ``hop_s`` covering ``seg`` (:func:`window_spans`), the last
    moved back to end at the segment's end with the full length (a short tail window gives a
    noisy embedding); a segment no longer than a window is one window."""
    spans = window_spans(seg.duration, window_s, hop_s)
    if len(spans) > 1 and spans[-1].duration < window_s:
        spans[-1] = TimeSpan(max(0.0, seg.duration - window_s), seg.duration)
    return [TimeSpan(seg.start + w.start, min(seg.end, seg.start + w.end)) for w in spans]


def _runs(labels: Sequence[int]) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][2] == lab:
            runs[-1] = (runs[-1][0], i + 1, lab)
        else:
            runs.append((i, i + 1, lab))
    return runs


def _absorb_short(runs: list[tuple[int, int, int]], min_len: int) -> list[tuple[int, int, int]]:
    """Merge the shortest run below ``min_len`` into its longer neighbour until none is left."""
    runs = list(runs)
    while len(runs) > 1:
        short = [i for i, (a, b, _) in enumerate(runs) if b - a < min_len]
        if not short:
            break
        i = min(short, key=lambda j: runs[j][1] - runs[j][0])
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(nbrs, key=lambda j: runs[j][1] - runs[j][0])
        lab = runs[j][2]
        lo, hi = min(i, j), max(i, j)
        runs[lo : hi + 1] = [(runs[lo][0], runs[hi][1], lab)]
        merged: list[tuple[int, int, int]] = []
        for r in runs:
            if merged and merged[-1][2] == r[2]:
                merged[-1] = (merged[-1][0], r[1], r[2])
            else:
                merged.append(r)
        runs = merged
    return runs


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
