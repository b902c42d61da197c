"""Stage-by-stage orchestration of the multimodal analysis.

audio → speech regions (VAD) → transcript (ASR, or a given transcript) → sentences with
refined timings → text emotion → emotion sequences → distributional embeddings →
emotion2vec on each sentence's span, the whole recording and a sliding-window timeline
→ fused embeddings (audio ⊕ text per sentence) → :class:`~emoflow.results.Result`.

Each model stage is built once, on first use, and reused for every recording a
:class:`Pipeline` analyses (and models are shared process-wide through the model cache).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.asr.transcript_io import read_transcript
from emoflow.audio.io import Audio, AudioSource, load_audio, probe_duration, source_name
from emoflow.config import PipelineConfig
from emoflow.errors import AudioError
from emoflow.models import ModelSpec
from emoflow.results import Result, SentenceResult, SourceInfo
from emoflow.text.sentences import SentenceSegmenter
from emoflow.text.sequences import emotion_sequence
from emoflow.types import AudioEmotion, EmotionScores, Sentence, Timeline, TimeSpan, Transcript

log = logging.getLogger(__name__)

STAGES = (
    "decode",
    "vad",
    "asr",
    "sentences",
    "text_emotion",
    "sequence_embedding",
    "audio_emotion",
    "assemble",
)
MIN_SAMPLES = 400  # 25 ms at 16 kHz: emotion2vec's first frame (speech.emotion2vec.FRAME_FIELD)
MODEL_STAGES = frozenset({"vad", "asr", "text_emotion", "sequence_embedding", "audio_emotion"})
Progress = Callable[[str], None]


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Work:
    """One recording in flight through the stages (picklable, so stages may run in other processes)."""

    source: Any
    transcript_in: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = field(default=None, repr=False)
    audio: Audio | None = None
    info: SourceInfo | None = None
    speech: list[TimeSpan] = field(default_factory=list)
    transcript: Transcript | None = None
    sentences: list[Sentence] = field(default_factory=list)
    text_scores: list[EmotionScores] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    text_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    audio_scores: list[EmotionScores] = field(default_factory=list)
    audio_emb: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    utterance: AudioEmotion | None = None
    timeline: Timeline | None = None
    voice: dict[str, str] = field(default_factory=dict)  # how the voice side was computed

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name)
        t0 = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def need_audio(self) -> Audio:
        if self.audio is None:
            raise RuntimeError("stage_decode must run first")
        return self.audio

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["progress"] = None  # callbacks stay in their process
        return state


class Pipeline:
    """The analysis with its models loaded once. Stages may be injected (tests, notebooks)."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        transcriber: Any = None,
        audio_encoder: Any = None,
        text_classifier: Any = None,
        sequence_embedder: Any = None,
        vad: Any = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._transcriber = transcriber
        self._audio = audio_encoder
        self._text = text_classifier
        self._embedder = sequence_embedder
        self._vad = vad
        self._fusion: Any = None
        self.segmenter = SentenceSegmenter(self.config.sentences, vad=None)

    def _spec(self, model: str) -> ModelSpec:
        return ModelSpec(
            model, device=self.config.device, dtype=self.config.dtype, offline=self.config.offline
        )

    # ---- stages, built on first use ------------------------------------------------------
    @property
    def vad(self) -> Any:
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            from emoflow.asr.whisper_ct2 import make_transcriber

            self._transcriber = make_transcriber(
                self.config.asr_backend, self._spec(self.config.asr_model), self.config.asr
            )
            if hasattr(self._transcriber, "_vad"):
                self._transcriber._vad = self.vad
        return self._transcriber

    @property
    def audio_encoder(self) -> Any:
        if self._audio is None:
            from emoflow.speech.emotion2vec import Emotion2vecEncoder

            self._audio = Emotion2vecEncoder(self._spec(self.config.audio_model))
        return self._audio

    @property
    def text_classifier(self) -> Any:
        if self._text is None:
            from emoflow.text.emotion import TextEmotionClassifier

            self._text = TextEmotionClassifier(self._spec(self.config.text_model))
        return self._text

    @property
    def sequence_embedder(self) -> Any:
        if self._embedder is None:
            emb = self.config.embedding
            if emb.method == "word2vec":
                from emoflow.text.embeddings import EmotionWord2Vec

                self._embedder = EmotionWord2Vec.load(emb.scheme or "")
            else:
                from emoflow.text.embeddings import SequenceEncoder

                self._embedder = SequenceEncoder(
                    self._spec(self.config.encoder_model),
                    pooling=emb.method,  # type: ignore[arg-type]
                    layers=emb.layers,
                    weights=emb.weights,
                )
        return self._embedder

    @property
    def fusion(self) -> Any:
        """The trained fusion classifier (``config.fusion_model``), checked against our features."""
        if self._fusion is None and self.config.fusion_model:
            from emoflow.fusion.features import feature_info
            from emoflow.fusion.train import FusionClassifier

            clf = FusionClassifier.load(self.config.fusion_model)
            clf.check_features(feature_info(self))
            self._fusion = clf
        return self._fusion

    def load_all(self, asr: bool = True) -> None:
        """Load every model now instead of on first use: a missing model fails before any work."""
        _ = (self.vad, self.audio_encoder, self.text_classifier, self.sequence_embedder, self.fusion)
        if asr:
            _ = self.transcriber

    # ---- the analysis ---------------------------------------------------------------------
    def analyze(
        self,
        source: AudioSource | Audio,
        transcript: str | os.PathLike | Transcript | None = None,
        progress: Progress | None = None,
    ) -> Result:
        """Analyse one recording. ``transcript``: a precomputed word-level transcript (file or
        object) instead of running ASR. Raises typed errors for bad input."""
        work = Work(source, transcript, progress=progress)
        for step in (self.stage_decode, self.stage_transcribe, self.stage_text, self.stage_audio):
            step(work)
        return self.stage_assemble(work)

    # The stages, each filling in part of a Work; the batch engines (local and Ray) call them
    # one by one, possibly in different processes.
    def check_source(self, source: AudioSource | Audio) -> float | None:
        """Check a recording against the limits from its header alone, before any decoding
        (``max_duration``, the timeline's window count); returns the header's duration (None:
        unknown). Raises :class:`AudioError` / :class:`ConfigError` naming the recording."""
        duration = probe_duration(source)
        if duration is not None:
            name, limit = source_name(source), self.config.max_duration
            if limit is not None and duration > limit:
                raise AudioError(
                    f"{name}: the audio is {duration:.1f} s long, over the limit of {limit:g} s; "
                    "cut it or raise the limit (--max-duration)"
                )
            self.config.timeline.check_duration(duration, name)
        return duration

    def stage_decode(self, work: Work) -> Work:
        with work.stage("decode"):
            self.check_source(work.source)
            audio = load_audio(work.source, max_duration=self.config.max_duration)
            name = source_name(work.source)
            # the header may have lied (or been silent): check the decoded length too
            self.config.timeline.check_duration(audio.duration, name)
            if len(audio.samples) < MIN_SAMPLES:
                raise AudioError(
                    f"{name}: the audio is only {len(audio.samples)} samples "
                    f"({audio.duration * 1000:.1f} ms) long at {audio.sample_rate} Hz; "
                    f"the analysis needs at least {MIN_SAMPLES / audio.sample_rate * 1000:.0f} ms"
                )
            path = audio.path
            work.audio = audio
            work.info = SourceInfo(
                path=path,
                sha256=file_sha256(path) if path else None,
                duration_s=round(audio.duration, 6),
                sample_rate=audio.source_rate,
                channels=audio.source_channels,
            )
        return work

    def stage_transcribe(self, work: Work) -> Work:
        """Speech regions, transcript (ASR or given) and timed sentences."""
        audio, c = work.need_audio(), self.config
        with work.stage("vad"):
            work.speech = self.vad(audio)
        with work.stage("asr"):
            given = work.transcript_in
            if given is None:
                work.transcript = self.transcriber(audio, work.speech)
            elif isinstance(given, Transcript):
                work.transcript = given
            else:
                work.transcript = read_transcript(
                    given,
                    audio_duration=audio.duration,
                    drop_fillers=c.asr.drop_fillers,
                    pause_adjust=bool(c.asr.pause_adjust),
                )
        with work.stage("sentences"):
            work.sentences = self.segmenter(work.transcript, audio, speech=work.speech)
        return work

    def stage_text(self, work: Work) -> Work:
        """Text emotion, emotion sequences and their distributional embeddings."""
        c = self.config
        texts = [s.text for s in work.sentences]
        with work.stage("text_emotion"):
            work.text_scores = self.text_classifier(texts) if texts else []
        with work.stage("sequence_embedding"):
            work.sequences = [emotion_sequence(e, c.top_k, c.separator) for e in work.text_scores]
            embedder = self.sequence_embedder
            emb = embedder(work.sequences) if work.sequences else np.zeros((0, embedder.dim), np.float32)
            work.text_emb = np.asarray(emb, np.float32)
        return work

    def stage_audio(self, work: Work) -> Work:
        """emotion2vec on each sentence's span, the whole recording and the timeline; with a
        ``pooled`` timeline all three come from one pass over the audio."""
        audio = work.need_audio()
        with work.stage("audio_emotion"):
            enc = self.audio_encoder
            voice = enc.analyze(audio, [s.span for s in work.sentences], self.config.timeline)
            work.audio_scores = [r.scores for r in voice.spans]
            work.audio_emb = (
                np.stack([r.embedding for r in voice.spans])
                if voice.spans
                else np.zeros((0, enc.dim), np.float32)
            )
            work.utterance, work.timeline = voice.utterance, voice.timeline
            work.voice = voice.describe()
        return work

    def stage_assemble(self, work: Work) -> Result:
        with work.stage("assemble"):
            assert work.info is not None and work.transcript is not None and work.utterance is not None
            assert work.timeline is not None and work.audio is not None
            n = len(work.sentences)
            fused = (
                self.fusion.scores(work.audio_emb, work.text_emb)
                if self.fusion is not None and n
                else [None] * n
            )
            rows = [
                SentenceResult(s, te, seq, ae, fz)
                for s, te, seq, ae, fz in zip(
                    work.sentences, work.text_scores, work.sequences, work.audio_scores, fused, strict=True
                )
            ]
            return Result(
                source=work.info,
                models=self.describe_models(work.transcript_in is not None),
                settings=self.config.to_dict(),
                transcript=work.transcript,
                sentences=rows,
                utterance=work.utterance,
                timeline=work.timeline,
                audio_sentences=work.audio_emb,
                text_sentences=work.text_emb,
                timings=work.timings,
                audio_samples=work.audio.samples,
                voice=work.voice,
            )

    def describe_models(self, transcript_given: bool = False) -> dict[str, Any]:
        """Which weights the analysis uses, per model: id, requested and resolved revision (hub
        commit, or ``sha256:`` content hash of a local folder), source and settings. Loads no
        model and uses no network, so any process can assemble a result (see models.py)."""
        from emoflow.models import package_provenance
        from emoflow.text.embeddings import describe_embedding

        c, e = self.config, self.config.embedding
        asr = (
            {"id": "precomputed transcript", "revision": None, "source": "given"}
            if transcript_given
            else self._spec(c.asr_model).record(backend=c.asr_backend).to_dict()
        )
        encoder = describe_embedding(
            e.method, spec=self._spec(c.encoder_model), layers=e.layers, weights=e.weights, scheme=e.scheme
        )
        return {
            "asr": asr,
            "audio_emotion": self._spec(c.audio_model).provenance(),
            "text_emotion": self._spec(c.text_model).provenance(),
            "sequence_encoder": encoder,
            "vad": package_provenance("silero-vad", "silero-vad").to_dict(),
            **({"fusion": self._spec(c.fusion_model).provenance()} if c.fusion_model else {}),
        }


_DEFAULT: dict[PipelineConfig, Pipeline] = {}


def analyze(
    source: AudioSource | Audio,
    config: PipelineConfig | None = None,
    transcript: str | os.PathLike | Transcript | None = None,
) -> Result:
    """Analyse one recording with default (or given) settings; models are reused across calls."""
    config = config or PipelineConfig()
    if config not in _DEFAULT:
        _DEFAULT[config] = Pipeline(config)
    return _DEFAULT[config].analyze(source, transcript)


def output_dir_for(out: str | os.PathLike, source: str | os.PathLike) -> Path:
    return Path(out) / Path(source).stem
