"""Diarisation inside the pipeline: the configured backend, its speakers put on one recording's
words and sentences, and a result's per-speaker summary.

:class:`~emoflow.pipeline.Pipeline` calls these from ``stage_transcribe`` (after VAD, ASR and
sentences, before anything downstream reads the sentences) and ``stage_assemble``; they are
plain functions over the typed values so the batch engines and the service run the same code.

Speech regions: the ``ge2e`` backend finds its own (Silero with a lower threshold and more
padding than the pipeline's VAD): on the shared conversations that gave DER 0.180, the
pipeline's speech regions 0.217 (collar 0.25 s), for one more Silero pass (~0.01 RTF).
``pyannote`` segments the audio itself. So no backend is given the pipeline's regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from emoflow.diarization.base import Diarizer
from emoflow.diarization.speakers import (
    SpeakerSummary,
    assign_speakers,
    speaker_summary,
    split_sentences_at_speakers,
)
from emoflow.diarization.types import Diarization
from emoflow.types import EmotionScores, Sentence, Transcript, Word

if TYPE_CHECKING:
    from emoflow.audio.io import Audio
    from emoflow.config import PipelineConfig
    from emoflow.results import SentenceResult

# A sentence is cut at a speaker change only where each side keeps at least this many words:
# a single word at a sentence's edge that the turn boundary (GE2E windows, ASR word times: both
# off by a few hundred ms) gives to the neighbouring speaker stays in its sentence.
MIN_WORDS_PER_PIECE = 2


def build_diarizer(config: PipelineConfig) -> Diarizer:
    """The backend ``config`` names, loaded (a missing package, model or token:
    :class:`~emoflow.errors.ModelUnavailableError`, raised here before any work)."""
    from emoflow.diarization import make_diarizer

    if config.diarizer == "pyannote":
        from emoflow.diarization.pyannote_backend import DEFAULT_PYANNOTE_MODEL

        return make_diarizer(
            "pyannote",
            model=config.diarizer_model or DEFAULT_PYANNOTE_MODEL,
            device=config.device,
            offline=config.offline,
        )
    diarizer = make_diarizer(config.diarizer, weights=config.diarizer_model, device=config.device)
    _import_mel_front_end()
    return diarizer


def _import_mel_front_end() -> None:
    """Import the GE2E mel front end (``librosa.feature``, which pulls in ``scipy.signal``) with
    the model: 3-9 s on a busy 2-core machine that otherwise land on the first recording's
    ``diarize`` stage (cold: 12.4 s for a 25 s conversation; warm: 1.4 s)."""
    import importlib.util

    if importlib.util.find_spec("librosa") is not None:
        import librosa.feature  # noqa: F401


def diarize(diarizer: Diarizer, config: PipelineConfig, audio: Audio) -> Diarization:
    """Who spoke when in ``audio``, with the speaker counts of ``config`` (see the module
    docstring for why the pipeline's speech regions are not passed)."""
    return diarizer(
        audio,
        None,
        num_speakers=config.speakers,
        min_speakers=config.min_speakers,
        max_speakers=config.max_speakers,
    )


def attribute_speakers(
    diarization: Diarization, transcript: Transcript, sentences: Sequence[Sentence]
) -> tuple[Transcript, list[Sentence]]:
    """The transcript and sentences with speakers: each word goes to the speaker whose turns
    cover most of it; a sentence whose words change speaker is cut there (pieces of at least
    :data:`MIN_WORDS_PER_PIECE` words) and sentences are re-indexed; each sentence's words then
    carry the sentence's speaker, and the transcript's words the speaker of the sentence word
    they are (their own assignment where the sentences left them out). Without turns (silence)
    nothing changes: speakers stay ``None``."""
    turns = diarization.turns
    if not turns:
        return transcript, list(sentences)
    flat = [w for s in sentences for w in s.words]
    pieces = split_sentences_at_speakers(
        sentences, assign_speakers(flat, turns), turns=turns, min_words=MIN_WORDS_PER_PIECE
    )
    out: list[Sentence] = []
    said: dict[tuple[str, float, float], str | None] = {}
    for piece, speaker in pieces:
        words = tuple(replace(w, speaker=speaker) for w in piece.words)
        said.update(((w.text, w.start, w.end), speaker) for w in piece.words)
        out.append(replace(piece, words=words, speaker=speaker))
    own = assign_speakers(transcript.words, turns)
    words_t: list[Word] = [
        replace(w, speaker=said.get((w.text, w.start, w.end), s))
        for w, s in zip(transcript.words, own, strict=True)
    ]
    return Transcript(tuple(words_t), transcript.language, transcript.text), out


def _probabilities(scores: EmotionScores | None) -> dict[str, float] | None:
    return scores.as_mapping() if scores is not None and scores.labels else None


def summarize_speakers(
    diarization: Diarization | None, sentences: Sequence[SentenceResult], duration: float
) -> tuple[SpeakerSummary, ...]:
    """Per speaker (in order of first appearance): talk time from the turns, sentence count,
    mean voice and text emotion probabilities and their trend over the recording's thirds.
    Sentences without voice scores (an encoder without a head) count for the text side only.
    Empty without diarisation."""
    if diarization is None:
        return ()
    rows = list(sentences)
    return tuple(
        speaker_summary(
            [r.sentence.speaker for r in rows],
            [r.sentence.span for r in rows],
            [_probabilities(r.audio_emotion) for r in rows],
            [_probabilities(r.text_emotion) for r in rows],
            turns=diarization.turns,
            duration=duration,
        )
    )
