"""Stage-by-stage orchestration of the multimodal analysis.

audio → speech regions (VAD) → transcript (ASR, or a given transcript) → sentences with
refined timings → (with ``diarize``: speakers on words and sentences, sentences cut at speaker
changes) → text emotion → emotion sequences → distributional embeddings →
emotion2vec on each sentence's span, the whole recording and a sliding-window timeline
→ fused embeddings (audio ⊕ text per sentence) → :class:`~emoflow.results.Result`.

Each model stage is built once, on first use, and reused for every recording a
:class:`Pipeline` analyses (and models are shared process-wide through the model cache).
The stages are typed by their Protocols (:mod:`emoflow.protocols`); which weights they use is
known from the settings alone (:func:`~emoflow.provenance_record.models_provenance`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoflow.asr.transcript_io import read_transcript
from emoflow.audio.io import Audio, AudioSource, load_audio, probe_duration, source_name
from emoflow.config import PipelineConfig
from emoflow.errors import AudioError
from emoflow.models import ModelSpec
from emoflow.protocols import (
    AudioEmotionModel,
    SequenceEmbedder,
    SpeechRegions,
    TextEmotionModel,
    Transcriber,
)
from emoflow.provenance import Provenance
from emoflow.provenance_record import model_spec, models_provenance
from emoflow.results import Result, SentenceResult, SourceInfo
from emoflow.text.sentences import SentenceSegmenter
from emoflow.text.sequences import emotion_sequence
from emoflow.types import Transcript, VoiceAnalysis, samples_to_seconds
from emoflow.work import MODEL_STAGES, STAGES, Progress, TranscriptSource, Work, file_sha256

if TYPE_CHECKING:
    from emoflow.diarization import Diarizer
    from emoflow.fusion.train import FusionClassifier

__all__ = [  # the Work record and its names live in emoflow.work; importable from here as before
    "MODEL_STAGES",
    "STAGES",
    "Pipeline",
    "Progress",
    "TranscriptSource",
    "Work",
    "analyze",
    "file_sha256",
    "models_provenance",
    "output_dir_for",
]

log = logging.getLogger(__name__)

MIN_SAMPLES = 400  # 25 ms at 16 kHz: emotion2vec's first frame (speech.emotion2vec.FRAME_FIELD)


class Pipeline:
    """The analysis with its models loaded once. Stages may be injected (tests, notebooks): any
    object that fits the stage's Protocol (:mod:`emoflow.protocols`) will do."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        transcriber: Transcriber | None = None,
        audio_encoder: AudioEmotionModel | None = None,
        text_classifier: TextEmotionModel | None = None,
        sequence_embedder: SequenceEmbedder | None = None,
        vad: SpeechRegions | None = None,
        fusion: FusionClassifier | None = None,
        diarizer: Diarizer | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._diarizer = diarizer
        self._transcriber = transcriber
        self._audio = audio_encoder
        self._text = text_classifier
        self._embedder = sequence_embedder
        self._vad = vad
        self._fusion = fusion
        self.segmenter = SentenceSegmenter(self.config.sentences, vad=None)

    def _spec(self, model: str) -> ModelSpec:
        return model_spec(self.config, model)

    def derive(self, config: PipelineConfig) -> Pipeline:
        """A pipeline with ``config`` that shares this one's already built stages wherever the
        settings a stage is built from are the same in both (the service derives one per
        request's settings; a stage not built yet is built by the new pipeline on first use,
        its model still shared through the model cache)."""

        def same(*names: str) -> bool:
            return all(getattr(self.config, n) == getattr(config, n) for n in names)

        placed = same("device", "dtype", "offline")  # every model stage is built with these
        fusion = self._fusion
        if fusion is not None and not (same("fusion_model") and self._same_features(config)):
            fusion = None  # checked against other features: the new pipeline checks its own
        return Pipeline(
            config,
            vad=self._vad,  # Silero has no settings
            transcriber=self._transcriber if placed and same("asr_backend", "asr_model", "asr") else None,
            audio_encoder=self._audio if placed and same("audio_model", "audio_layers") else None,
            text_classifier=self._text if placed and same("text_model") else None,
            sequence_embedder=self._embedder if placed and same("encoder_model", "embedding") else None,
            fusion=fusion,
            diarizer=self._diarizer if placed and same("diarizer", "diarizer_model") else None,
        )

    def _same_features(self, config: PipelineConfig) -> bool:
        from emoflow.fusion.features import FeatureInfo

        return not FeatureInfo.of(self.config).differences(FeatureInfo.of(config))

    # ---- stages, built on first use ------------------------------------------------------
    @property
    def vad(self) -> SpeechRegions:
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    @property
    def transcriber(self) -> Transcriber:
        if self._transcriber is None:
            from emoflow.asr import make_transcriber

            c = self.config
            self._transcriber = make_transcriber(c.asr_backend, self._spec(c.asr_model), c.asr, vad=self.vad)
        return self._transcriber

    @property
    def audio_encoder(self) -> AudioEmotionModel:
        if self._audio is None:
            from emoflow.speech import make_audio_encoder

            c = self.config
            self._audio = make_audio_encoder(self._spec(c.audio_model), layers=c.audio_layers)
        return self._audio

    @property
    def text_classifier(self) -> TextEmotionModel:
        if self._text is None:
            from emoflow.text.emotion import TextEmotionClassifier

            self._text = TextEmotionClassifier(self._spec(self.config.text_model))
        return self._text

    @property
    def sequence_embedder(self) -> SequenceEmbedder:
        if self._embedder is None:
            emb = self.config.embedding
            if emb.method == "word2vec":
                from emoflow.text.embeddings import EmotionWord2Vec

                self._embedder = EmotionWord2Vec.load(emb.scheme or "")
            else:
                from emoflow.text.embeddings import SequenceEncoder

                self._embedder = SequenceEncoder(
                    self._spec(self.config.encoder_model),
                    pooling="layers" if emb.method == "layers" else "cls",
                    layers=emb.layers,
                    weights=emb.weights,
                )
        return self._embedder

    @property
    def fusion(self) -> FusionClassifier | None:
        """The trained fusion classifier (``config.fusion_model``), checked against the features
        these settings give (from their provenance records: no model is loaded to check)."""
        if self._fusion is None and self.config.fusion_model:
            from emoflow.fusion.features import FeatureInfo
            from emoflow.fusion.train import FusionClassifier

            clf = FusionClassifier.load(self.config.fusion_model)
            clf.check_features(FeatureInfo.of(self.config))
            self._fusion = clf
        return self._fusion

    @property
    def diarizer(self) -> Diarizer | None:
        """The diarisation backend (``config.diarizer``), built on first use; ``None`` unless
        ``config.diarize``."""
        if self._diarizer is None and self.config.diarize:
            from emoflow.diarization.stage import build_diarizer

            self._diarizer = build_diarizer(self.config)
        return self._diarizer if self.config.diarize else None

    def load_all(self, asr: bool = True) -> None:
        """Load every model now instead of on first use: a missing model fails before any work
        (the diarizer first: pyannote without its package, model or token fails in a second)."""
        _ = (self.diarizer, self.vad, self.audio_encoder, self.text_classifier, self.sequence_embedder)
        _ = self.fusion
        if asr:
            _ = self.transcriber

    # ---- the analysis ---------------------------------------------------------------------
    def analyze(
        self,
        source: AudioSource | Audio,
        transcript: TranscriptSource | None = None,
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
                least_ms = samples_to_seconds(MIN_SAMPLES, audio.sample_rate) * 1000
                raise AudioError(
                    f"{name}: the audio is only {len(audio.samples)} samples "
                    f"({audio.duration * 1000:.1f} ms) long at {audio.sample_rate} Hz; "
                    f"the analysis needs at least {least_ms:.0f} ms"
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
        """Speech regions, transcript (ASR or given), timed sentences and, with ``diarize``,
        their speakers (sentences cut where the speaker changes)."""
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
        diarizer = self.diarizer
        if diarizer is not None:
            from emoflow.diarization.stage import attribute_speakers, diarize

            with work.stage("diarize"):
                work.diarization = diarize(diarizer, c, audio)
                work.transcript, work.sentences = attribute_speakers(
                    work.diarization, work.transcript, work.sentences
                )
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
            voice = self._voice_head(voice)
            work.audio_scores = [r.scores for r in voice.spans]
            work.audio_emb = (
                np.stack([r.embedding for r in voice.spans])
                if voice.spans
                else np.zeros((0, enc.dim), np.float32)
            )
            work.utterance, work.timeline = voice.utterance, voice.timeline
            work.voice = voice.describe()
        return work

    def _voice_head(self, voice: VoiceAnalysis) -> VoiceAnalysis:
        """Voice scores for an encoder without a classification head (a bare wav2vec2, WavLM or
        Whisper encoder) from an ``audio-only`` fusion model trained on its embeddings; without
        one the voice side keeps its embeddings and no scores ("no voice scores")."""
        from emoflow.fusion.voice_head import voice_from_fusion

        return voice_from_fusion(voice, self.fusion)

    def stage_assemble(self, work: Work) -> Result:
        from emoflow.diarization.stage import summarize_speakers

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
                diarization=work.diarization,
                speakers=summarize_speakers(work.diarization, rows, work.info.duration_s),
            )

    def describe_models(self, transcript_given: bool = False) -> dict[str, Provenance]:
        """Which weights the analysis uses, per model (see :func:`models_provenance`): loads no
        model and uses no network, so any process can assemble a result."""
        return models_provenance(self.config, transcript_given=transcript_given)


_DEFAULT: dict[PipelineConfig, Pipeline] = {}


def analyze(
    source: AudioSource | Audio,
    config: PipelineConfig | None = None,
    transcript: TranscriptSource | None = None,
) -> Result:
    """Analyse one recording with default (or given) settings; models are reused across calls."""
    config = config or PipelineConfig()
    if config not in _DEFAULT:
        _DEFAULT[config] = Pipeline(config)
    return _DEFAULT[config].analyze(source, transcript)


def output_dir_for(out: str | os.PathLike, source: str | os.PathLike) -> Path:
    return Path(out) / Path(source).stem
