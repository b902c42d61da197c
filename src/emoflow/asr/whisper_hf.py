"""Whisper (and CrisperWhisper) through transformers, with word timestamps.

Only speech goes to the recogniser: Silero VAD finds the speech regions, which are
grouped into pieces of at most ~28 s and transcribed as arrays (never paths, which
would need the ffmpeg binary); a piece longer than 30 s is decoded in 30 s windows by
the pipeline's chunked long-form mode. Word times come from transformers' own DTW over the
alignment heads' cross-attentions, but those are computed by one teacher-forced decoder pass
instead of keeping every attention map during generation (see
:mod:`emoflow.asr.word_alignment`: the same times, a bounded memory). Word times are offset
back to the recording and repaired (see :mod:`emoflow.asr.repair`); CrisperWhisper's
pause rule is applied to CrisperWhisper models.

As a :class:`~emoflow.asr.base.TranscriberStage`: ``preprocess`` = speech regions → pieces,
``_forward`` = the transformers pipeline on the pieces (:meth:`HFWhisperTranscriber.transcribe_pieces`:
pieces up to 30 s together, longer ones in 30 s windows) → raw words in the recording,
``postprocess`` = repairs → transcript. The loaded model is the transformers pipeline
(``pipeline=``: one built by the caller).

Licences: CrisperWhisper (the default) is CC BY-NC 4.0 — non-commercial use only;
``openai/whisper-large-v3-turbo`` (MIT) is the permissive choice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoflow.asr.base import Decoded, Pieces, TranscriberStage
from emoflow.asr.repair import RawWord
from emoflow.asr.word_alignment import install as install_low_memory_alignment
from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.config import DEFAULT_ASR_MODEL, AsrConfig
from emoflow.errors import ModelError
from emoflow.models import ModelSpec
from emoflow.types import TimeSpan

if TYPE_CHECKING:
    from emoflow.protocols import SpeechRegions

log = logging.getLogger(__name__)


class HFWhisperTranscriber(TranscriberStage[Any]):
    """Stage: audio → transcript with word times, through ``transformers``' ASR pipeline."""

    kind = "asr-hf"
    backend = "transformers"
    required_files = ("config.json",)

    def __init__(
        self,
        spec: ModelSpec | str = DEFAULT_ASR_MODEL,
        config: AsrConfig | None = None,
        *,
        vad: SpeechRegions | None = None,
        pipeline: Any = None,
    ) -> None:
        super().__init__(spec, config, vad=vad, loaded=pipeline)
        gen = self.pipe.model.generation_config
        if not getattr(gen, "alignment_heads", None):
            raise ModelError(
                f"ASR model {self.spec.id} has no alignment_heads in its generation_config, so it "
                "cannot give word timestamps; use a Whisper checkpoint that ships them"
            )
        if not install_low_memory_alignment(self.pipe.model):
            log.warning(
                "ASR model %s: word timestamps keep every attention map (memory grows with the "
                "model size); this model type does not take emoflow's low-memory alignment",
                self.spec.id,
            )
        self.multilingual = bool(getattr(gen, "is_multilingual", False))

    def load(self, path: Path) -> Any:
        from transformers import pipeline

        return pipeline("automatic-speech-recognition", model=str(path), device=self.device, dtype=self.dtype)

    @property
    def pipe(self) -> Any:
        """The transformers ASR pipeline."""
        return self.loaded

    def generate_kwargs(self) -> dict[str, Any]:
        """The decoding settings passed to ``generate`` (beams; task and language when multilingual)."""
        kw: dict[str, Any] = {"num_beams": self.config.beam_size}
        if self.multilingual:
            kw["task"] = "transcribe"
            if self.config.language:
                kw["language"] = self.config.language
        return kw

    def _forward(self, batch: Pieces) -> Decoded:
        words = self.transcribe_pieces(batch.audio, batch.pieces)
        return Decoded(batch.audio, words, self.config.language if self.multilingual else "en")

    def transcribe_pieces(self, audio: Audio, pieces: Sequence[TimeSpan]) -> list[RawWord]:
        """Raw words of each piece, times offset to the recording."""
        if not pieces:
            return []
        outs: list[Any] = [None] * len(pieces)
        short = [i for i, p in enumerate(pieces) if p.duration <= 30.0]
        long = [i for i, p in enumerate(pieces) if p.duration > 30.0]
        for idx, extra in ((short, {}), (long, {"chunk_length_s": 30})):
            if not idx:
                continue
            inputs = [
                {"raw": audio.slice(pieces[i].start, pieces[i].end), "sampling_rate": TARGET_RATE}
                for i in idx
            ]
            res = self.pipe(
                inputs,
                return_timestamps="word",
                batch_size=self.config.batch_size,
                generate_kwargs=self.generate_kwargs(),
                **extra,
            )
            for i, r in zip(idx, res, strict=True):
                outs[i] = r
        words: list[RawWord] = []
        for piece, out in zip(pieces, outs, strict=True):
            for c in out.get("chunks", []):
                s, e = c.get("timestamp", (None, None))
                words.append(
                    RawWord(
                        c["text"],
                        None if s is None else round(piece.start + s, 3),
                        None if e is None else round(min(piece.end, piece.start + e), 3),
                    )
                )
        return words
