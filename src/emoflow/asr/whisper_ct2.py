"""Whisper through faster-whisper (CTranslate2): any CTranslate2 Whisper conversion,
e.g. a converted CrisperWhisper. Optional: ``pip install emoflow[ct2]``.

Only speech goes to the recogniser, and the same speech as with the transformers backend:
emoflow's speech regions (Silero VAD, or the ones the pipeline computed) are grouped into
the same pieces and passed as ``clip_timestamps``; faster-whisper's own ``vad_filter`` stays
off (it would pick its own regions, so the two backends would transcribe different audio).
Words come back with times (in the recording) and probabilities and get the same repairs as
every other transcript.

faster-whisper runs the model itself; as a :class:`~emoflow.asr.base.TranscriberStage` the steps
map as: ``preprocess`` = speech regions → pieces (→ ``clip_timestamps``), ``_forward`` =
``WhisperModel.transcribe`` on those clips (its lazy segments consumed there) → raw words,
``postprocess`` = repairs → transcript. The loaded model is the ``WhisperModel`` (``model=``:
one built by the caller); its compute type is ``spec.dtype``, or for ``auto`` float16 on CUDA
and int8 on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoflow.asr.base import Decoded, Pieces, TranscriberStage
from emoflow.asr.repair import RawWord
from emoflow.config import AsrConfig
from emoflow.errors import ConfigError
from emoflow.models import ModelSpec

if TYPE_CHECKING:
    from emoflow.protocols import SpeechRegions

log = logging.getLogger(__name__)


class CT2WhisperTranscriber(TranscriberStage[Any]):
    """Stage: audio → transcript with word times, through faster-whisper."""

    kind = "asr-ct2"
    backend = "faster-whisper"
    what = "CTranslate2 Whisper model"
    required_files = ("model.bin",)

    def __init__(
        self,
        spec: ModelSpec | str,
        config: AsrConfig | None = None,
        *,
        vad: SpeechRegions | None = None,
        model: Any = None,
    ) -> None:
        super().__init__(spec, config, vad=vad, loaded=model)

    def compute_dtype(self) -> str:
        """CTranslate2's compute type: ``spec.dtype`` as given; ``auto`` is float16 on CUDA, int8 on CPU."""
        if self.spec.dtype != "auto":
            return self.spec.dtype
        return "float16" if self.device.startswith("cuda") else "int8"

    def load(self, path: Path) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ConfigError("the faster-whisper backend needs `pip install emoflow[ct2]`") from e
        import torch

        # CTranslate2 has its own thread pool: size it by the caller's torch setting (the entry
        # point's thread policy, e.g. 1 in a Ray actor) rather than every core of the machine
        return WhisperModel(
            str(path),
            device="cuda" if self.device.startswith("cuda") else "cpu",
            compute_type=self.dtype,
            cpu_threads=torch.get_num_threads(),
        )

    @property
    def model(self) -> Any:
        """The faster-whisper ``WhisperModel``."""
        return self.loaded

    def _forward(self, batch: Pieces) -> Decoded:
        if not batch.pieces:  # an empty clip list would make faster-whisper decode the whole file
            english_only = not getattr(getattr(self.model, "model", None), "is_multilingual", True)
            return Decoded(batch.audio, [], "en" if english_only else self.config.language)
        segments, info = self.model.transcribe(
            batch.audio.samples,
            language=self.config.language,
            word_timestamps=True,
            beam_size=self.config.beam_size,
            vad_filter=False,
            clip_timestamps=[t for p in batch.pieces for t in (p.start, p.end)],
            condition_on_previous_text=False,
        )
        words = [
            RawWord(w.word, w.start, w.end, w.probability) for seg in segments for w in (seg.words or [])
        ]
        return Decoded(batch.audio, words, info.language)
