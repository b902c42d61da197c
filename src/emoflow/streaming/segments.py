"""One closed speech segment through the pipeline's own stages: ``stage_decode`` →
``stage_transcribe`` (the stream's VAD regions, ASR, timed sentences) → ``stage_text`` (text
emotion, sequences, embeddings), the voice emotion of each sentence span from the audio
encoder's ``spans``; then every time moved from the segment to the stream."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from emoflow.audio.io import Audio
from emoflow.pipeline import Pipeline
from emoflow.results import SentenceResult
from emoflow.types import AudioEmotion, EmotionScores, Sentence, TimeSpan, Transcript, Word
from emoflow.work import Work

if TYPE_CHECKING:
    from emoflow.streaming.speakers import LiveSpeakers


class KnownRegions:
    """A :class:`~emoflow.protocols.SpeechRegions` that gives the regions the stream's VAD
    already found (relative to the segment's audio): Silero does not run twice."""

    def __init__(self) -> None:
        self.regions: list[TimeSpan] = []

    def __call__(self, audio: Audio) -> list[TimeSpan]:
        return list(self.regions)


def shift_span(span: TimeSpan, offset: float) -> TimeSpan:
    return TimeSpan(round(span.start + offset, 6), round(span.end + offset, 6))


def shift_word(word: Word, offset: float) -> Word:
    return replace(word, span=shift_span(word.span, offset))


def shift_sentence(s: Sentence, offset: float, index: int) -> Sentence:
    return replace(
        s, index=index, span=shift_span(s.span, offset), words=tuple(shift_word(w, offset) for w in s.words)
    )


@dataclass
class SegmentResult:
    """A segment's sentences (times in the stream) and what the final result needs of them."""

    words: list[Word]
    language: str | None
    rows: list[SentenceResult]
    text_emb: np.ndarray
    audio_emb: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def analyse_segment(
    pipeline: Pipeline,
    known: KnownRegions,
    samples: np.ndarray,
    offset: float,
    regions: Sequence[TimeSpan],
    first_index: int,
    new_from: float = 0.0,
    speakers: tuple[LiveSpeakers, np.ndarray, float] | None = None,
) -> SegmentResult:
    """``samples`` (16 kHz) start ``offset`` seconds into the stream; ``regions``: its speech
    (seconds in the stream). Sentences that start before ``new_from`` (seconds in the stream)
    were given with an earlier segment: that audio is the recogniser's context only, as in
    ``analyze``, where neighbouring regions are decoded together. ``pipeline`` must have been
    built with ``vad=known``."""
    known.regions = [
        TimeSpan(max(0.0, r.start - offset), min(len(samples) / 16000, max(0.0, r.end - offset)))
        for r in regions
    ]
    work = Work(Audio(samples))
    pipeline.stage_decode(work)
    pipeline.stage_transcribe(work)
    assert work.transcript is not None
    cut = new_from - offset - 0.05  # word times are imprecise by about this much
    new_words = [w for w in work.transcript.words if w.start >= cut]
    if len(new_words) < len(work.transcript.words):
        # the context's words were given with an earlier segment: the sentences are those of the
        # new words alone (a sentence the recogniser ran on from the context keeps its new part)
        # ... refined to the new speech only (the context's speech belongs to earlier sentences)
        work.transcript = Transcript(tuple(new_words), work.transcript.language)
        speech = [TimeSpan(max(r.start, cut), r.end) for r in work.speech if r.end > cut]
        with work.stage("sentences"):
            work.sentences = pipeline.segmenter(work.transcript, work.need_audio(), speech=speech)
    if speakers is not None:  # live speakers: the segment's turns onto its new words and sentences
        from emoflow.diarization.stage import attribute_speakers
        from emoflow.streaming.speakers import segment_speakers

        live, spk_samples, spk_offset = speakers
        with work.stage("diarize"):
            turns = segment_speakers(live, spk_samples, spk_offset, regions, new_from, local_to=offset)
            work.transcript, work.sentences = attribute_speakers(turns, work.transcript, work.sentences)
    pipeline.stage_text(work)
    audio = work.need_audio()
    enc = pipeline.audio_encoder
    with work.stage("audio_emotion"):
        voice: list[AudioEmotion] = (
            enc.spans(audio, [s.span for s in work.sentences]) if work.sentences else []
        )
        voice = voice_head(pipeline, voice)
    sentences = [shift_sentence(s, offset, first_index + i) for i, s in enumerate(work.sentences)]
    audio_emb = np.stack([v.embedding for v in voice]) if voice else np.zeros((0, enc.dim), np.float32)
    fusion = pipeline.fusion
    fused: list[EmotionScores | None] = (
        list(fusion.scores(audio_emb, work.text_emb)) if fusion is not None and voice else [None] * len(voice)
    )
    rows = [
        SentenceResult(s, te, seq, v.scores, fz)
        for s, te, seq, v, fz in zip(sentences, work.text_scores, work.sequences, voice, fused, strict=True)
    ]
    return SegmentResult(
        [shift_word(w, offset) for w in new_words],
        work.transcript.language,
        rows,
        work.text_emb,
        audio_emb,
        {k: v for k, v in work.timings.items() if k != "decode"},
    )


def voice_head(pipeline: Pipeline, voice: list[AudioEmotion]) -> list[AudioEmotion]:
    """Voice scores of an encoder without a head from the pipeline's ``audio-only`` fusion
    model, as ``analyze`` gives them (:func:`~emoflow.fusion.voice_head.voice_scores`)."""
    from emoflow.fusion.voice_head import voice_scores

    scores = voice_scores(pipeline.fusion, voice[0].scores, [v.embedding for v in voice]) if voice else None
    if scores is None:
        return voice
    return [AudioEmotion(sc, v.embedding) for v, sc in zip(voice, scores, strict=True)]


def empty_scores(labels: Sequence[str]) -> EmotionScores:
    return EmotionScores(tuple(labels), tuple(0.0 for _ in labels))


def joined_transcript(parts: Sequence[SegmentResult]) -> Transcript:
    words = tuple(w for p in parts for w in p.words)
    language = next((p.language for p in parts if p.language), None)
    return Transcript(words, language)
