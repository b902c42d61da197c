"""What every Whisper backend shares: speech regions in, a repaired transcript out.

:class:`TranscriberStage` is the :class:`~emoflow.stage.ModelStage` of the transcribers. It owns
the steps every backend does the same way — the speech regions (the ``vad`` given, or Silero on
first use) grouped into pieces (:func:`group_regions`: ``preprocess``) and the recogniser's raw
words repaired into a :class:`~emoflow.types.Transcript` (``postprocess``) — and the
provenance (backend, CrisperWhisper's pause rule). A backend writes ``load`` and ``_forward``
(the pieces → raw words with times in the recording, and the language).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from emoflow.asr.repair import RawWord, repair_words
from emoflow.config import AsrConfig
from emoflow.errors import ConfigError
from emoflow.models import ModelSpec
from emoflow.provenance import Provenance, model_provenance
from emoflow.stage import ModelStage
from emoflow.types import TimeSpan, Transcript

if TYPE_CHECKING:
    from emoflow.audio.io import Audio
    from emoflow.protocols import SpeechRegions

BACKENDS = ("transformers", "faster-whisper")
BACKEND_ALIASES = {"ct2": "faster-whisper"}


def backend_name(backend: str) -> str:
    """The canonical name of an ASR backend (``ct2`` → ``faster-whisper``), or :class:`ConfigError`."""
    name = BACKEND_ALIASES.get(backend, backend)
    if name not in BACKENDS:
        raise ConfigError(f"unknown ASR backend {backend!r}; use transformers or faster-whisper")
    return name


def pause_adjust_for(spec: ModelSpec, config: AsrConfig) -> bool:
    """CrisperWhisper's pause rule: as configured, else on for CrisperWhisper models only."""
    return config.pause_adjust if config.pause_adjust is not None else "crisper" in spec.id.lower()


def asr_options(backend: str, spec: ModelSpec, config: AsrConfig | None = None) -> dict[str, Any]:
    """The settings an ASR model's provenance records besides its weights."""
    return {"backend": backend_name(backend), "pause_adjust": pause_adjust_for(spec, config or AsrConfig())}


def asr_provenance(backend: str, spec: ModelSpec | str, config: AsrConfig | None = None) -> Provenance:
    """A transcriber's provenance from its settings alone (no model is loaded)."""
    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    return model_provenance(spec, **asr_options(backend, spec, config))


def group_regions(
    speech: Sequence[TimeSpan],
    max_segment_s: float,
    max_gap_s: float,
    pad_s: float = 0.2,
    duration: float | None = None,
) -> list[TimeSpan]:
    """Speech regions merged into pieces for the recogniser: neighbours closer than
    ``max_gap_s`` join while the piece stays under ``max_segment_s``; each piece gets
    ``pad_s`` of context on both sides (a lead-in or tail shorter than ``max_gap_s`` is kept
    whole, like a pause inside a piece). A single region longer than the limit stays one
    piece (the recogniser cuts it into 30 s windows itself)."""
    groups: list[list[float]] = []
    for r in speech:
        if groups and r.start - groups[-1][1] < max_gap_s and r.end - groups[-1][0] <= max_segment_s:
            groups[-1][1] = r.end
        else:
            groups.append([r.start, r.end])
    end = duration if duration is not None else float("inf")
    if groups and groups[0][0] < max_gap_s:  # a short lead-in stays, as a short pause inside would
        groups[0][0] = 0.0
    if groups and end - groups[-1][1] < max_gap_s:
        groups[-1][1] = end
    return [TimeSpan(max(0.0, a - pad_s), min(end, b + pad_s)) for a, b in groups]


@dataclass(frozen=True)
class Pieces:
    """What the recogniser is given: the recording and the pieces of it to decode."""

    audio: Audio
    pieces: tuple[TimeSpan, ...]


@dataclass(frozen=True)
class Decoded:
    """What the recogniser gave back: raw words (times in the recording) and the language."""

    audio: Audio
    words: list[RawWord]
    language: str | None


Loaded = TypeVar("Loaded")


class TranscriberStage(ModelStage[Loaded]):
    """Audio → transcript with word times: ``preprocess`` (speech regions → pieces),
    ``_forward`` (the backend: pieces → raw words), ``postprocess`` (repairs → transcript)."""

    backend: ClassVar[str] = ""
    what = "ASR model"
    flag = "--asr-model"

    def __init__(
        self,
        spec: ModelSpec | str,
        config: AsrConfig | None = None,
        *,
        vad: SpeechRegions | None = None,
        loaded: Loaded | None = None,
    ) -> None:
        self.config = config or AsrConfig()
        self._vad = vad
        super().__init__(spec, loaded=loaded)
        self.pause_adjust = pause_adjust_for(self.spec, self.config)

    @property
    def vad(self) -> SpeechRegions:
        """The speech detector used when a call gives no regions (Silero, built on first use)."""
        if self._vad is None:
            from emoflow.audio.vad import SpeechDetector

            self._vad = SpeechDetector()
        return self._vad

    def options(self) -> Mapping[str, Any]:
        return asr_options(self.backend, self.spec, self.config)

    def __call__(self, audio: Audio, speech: Sequence[TimeSpan] | None = None) -> Transcript:
        """Transcribe the speech in ``audio`` (``speech``: precomputed VAD regions)."""
        if speech is None:
            speech = self.vad(audio)
        return self.run((audio, speech))

    def preprocess(self, inputs: tuple[Audio, Sequence[TimeSpan]]) -> Pieces:
        audio, speech = inputs
        c = self.config
        return Pieces(
            audio, tuple(group_regions(speech, c.max_segment_s, c.max_gap_s, duration=audio.duration))
        )

    def _forward(self, batch: Pieces) -> Decoded:
        raise NotImplementedError

    def postprocess(self, outputs: Decoded) -> Transcript:
        words = repair_words(
            outputs.words,
            audio_duration=outputs.audio.duration,
            drop_fillers=self.config.drop_fillers,
            pause_adjust=self.pause_adjust,
            whisper_spacing=True,
            name=self.spec.id,
        )
        return Transcript(tuple(words), outputs.language)
