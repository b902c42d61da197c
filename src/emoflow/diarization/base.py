"""The diarisation seam: the :class:`Diarizer` protocol every backend meets, and the checks on
the speaker-count options shared by all of them (run before any model loads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from emoflow.audio.io import Audio
from emoflow.diarization.types import Diarization
from emoflow.errors import ConfigError
from emoflow.models import Provenance
from emoflow.types import TimeSpan

# The most speakers estimated when neither ``num_speakers`` nor ``max_speakers`` is given.
DEFAULT_MAX_SPEAKERS = 8


@dataclass(frozen=True)
class SpeakerCount:
    """What the caller said about the number of speakers, checked.

    ``exact``: the number of speakers (``--speakers N``), or ``None`` to estimate it between
    ``minimum`` and ``maximum`` (``--min-speakers`` / ``--max-speakers``; ``maximum`` ``None`` =
    the backend's own bound).
    """

    exact: int | None = None
    minimum: int = 1
    maximum: int | None = None

    def bounds(self, default_max: int = DEFAULT_MAX_SPEAKERS) -> tuple[int, int]:
        """``(lo, hi)``: the inclusive range the count may take (``exact`` gives ``(n, n)``)."""
        if self.exact is not None:
            return self.exact, self.exact
        hi = self.maximum if self.maximum is not None else max(default_max, self.minimum)
        return self.minimum, hi

    def to_dict(self) -> dict[str, int | None]:
        return {"num_speakers": self.exact, "min_speakers": self.minimum, "max_speakers": self.maximum}


def check_speaker_count(
    num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None
) -> SpeakerCount:
    """Validate the speaker-count options; :class:`~emoflow.errors.ConfigError` (a usage error,
    exit 2 in the CLI) for a count below 1, a non-integer, ``min > max``, or ``num_speakers``
    outside ``[min_speakers, max_speakers]``. Cheap: call it before loading any model."""
    for name, v in (
        ("num_speakers", num_speakers),
        ("min_speakers", min_speakers),
        ("max_speakers", max_speakers),
    ):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name} must be a whole number, got {v!r}")
        if v < 1:
            raise ConfigError(f"{name} must be at least 1, got {v}; leave it out to estimate the count")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise ConfigError(f"min_speakers ({min_speakers}) is more than max_speakers ({max_speakers})")
    if num_speakers is not None:
        lo = min_speakers if min_speakers is not None else 1
        hi = max_speakers if max_speakers is not None else num_speakers
        if not lo <= num_speakers <= hi:
            raise ConfigError(
                f"num_speakers ({num_speakers}) is outside min_speakers..max_speakers ({lo}..{hi}); "
                "give either the exact count or the bounds"
            )
        return SpeakerCount(num_speakers, num_speakers, num_speakers)
    return SpeakerCount(None, min_speakers if min_speakers is not None else 1, max_speakers)


@runtime_checkable
class Diarizer(Protocol):
    """Who spoke when. Backends load their model once, in the constructor.

    ``__call__``: ``audio`` is mono float32 at 16 kHz (:func:`emoflow.audio.io.load_audio`);
    ``speech`` is the speech regions in seconds when the caller already has them (the pipeline's
    Silero VAD), else the backend finds them itself (the offline backend) or ignores them
    (pyannote, which has its own segmentation). Speaker-count options as in
    :func:`check_speaker_count`. Returns turns in time order, speakers labelled ``SPEAKER_00``...
    in order of first appearance; silence gives no turns.

    ``provenance``: which weights and settings, without loading the model.
    """

    name: str

    def __call__(
        self,
        audio: Audio,
        speech: Sequence[TimeSpan] | None = None,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> Diarization: ...

    def provenance(self) -> Provenance: ...
