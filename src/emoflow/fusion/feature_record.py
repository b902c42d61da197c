"""The record of what a fusion feature depends on: :class:`FeatureInfo`.

The feature models' provenance records (from :func:`~emoflow.provenance_record.models_provenance`)
and the emotion-sequence settings, written as a feature cache's ``features.json`` (whose hash
keys the cache's items) and as the ``features`` of every fusion checkpoint trained on them. A
fusion model compares its record with the analysis' (:meth:`FeatureInfo.differences`) and
rebuilds the settings that give its features (:meth:`FeatureInfo.config`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from emoflow.config import PipelineConfig
from emoflow.errors import EmoflowError, InputError
from emoflow.provenance import Provenance
from emoflow.provenance_record import config_from_provenance, models_provenance

# features.json and fusion checkpoints name each model's record as they always have:
# field of FeatureInfo -> key of emoflow.provenance_record.models_provenance
RECORD_KEYS: Final = {
    "audio_model": "audio_emotion",
    "text_model": "text_emotion",
    "sequence_encoder": "sequence_encoder",
    "asr_model": "asr",
}
# models every extraction loads: their files are made local before describing them, so their
# commits (part of the cache key) are known from the first run on
RESOLVED: Final = ("audio_emotion", "text_emotion", "sequence_encoder")
# a field that informs without deciding what a fusion model reads: the ASR only writes the text
# of rows without any, and the widths follow from the models
INFORMATIVE: Final = {"compared": False}


@dataclass(frozen=True)
class FeatureInfo:
    """What the features of a manifest row depend on besides its audio and text: the feature
    models' provenance records and the emotion-sequence settings, plus the features' widths.

    Written as ``CACHE/features.json`` (its hash keys the cache) and as the ``features`` of
    every fusion checkpoint trained on them; a fusion model refuses features whose compared
    fields differ from its own (:meth:`differences`).
    """

    audio_model: Provenance
    text_model: Provenance
    sequence_encoder: Provenance
    asr_model: Provenance = field(metadata=INFORMATIVE)
    top_k: int
    separator: str
    audio_dim: int | None = field(default=None, metadata=INFORMATIVE)
    text_dim: int | None = field(default=None, metadata=INFORMATIVE)

    @classmethod
    def of(
        cls,
        config: PipelineConfig,
        *,
        resolve: bool = False,
        audio_dim: int | None = None,
        text_dim: int | None = None,
    ) -> FeatureInfo:
        """The record of the features ``config`` gives, from its settings alone (no model is
        loaded; ``resolve``: make the feature models' files local first, see :data:`RESOLVED`)."""
        m = models_provenance(config, resolve=RESOLVED if resolve else ())
        return cls(
            m["audio_emotion"],
            m["text_emotion"],
            m["sequence_encoder"],
            m["asr"],
            config.top_k,
            config.separator,
            audio_dim,
            text_dim,
        )

    def records(self) -> dict[str, Provenance]:
        """The models' records, keyed as :func:`~emoflow.provenance_record.models_provenance` keys them."""
        return {key: getattr(self, name) for name, key in RECORD_KEYS.items()}

    def config(self, base: PipelineConfig | None = None) -> PipelineConfig:
        """The analysis settings that give these features (``base``'s for everything else)."""
        base = replace(base or PipelineConfig(), top_k=self.top_k, separator=self.separator)
        return config_from_provenance(self.records(), base)

    @property
    def widths(self) -> tuple[int, int]:
        """``(audio_dim, text_dim)``; an error when the record does not say (no extraction made it)."""
        if self.audio_dim is None or self.text_dim is None:
            raise EmoflowError("the feature record lacks the features' widths; run `emoflow features` again")
        return self.audio_dim, self.text_dim

    def _compared(self, other: FeatureInfo) -> list[tuple[str, object, object]]:
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if f.metadata.get("compared", True)
        ]

    def differences(self, other: FeatureInfo) -> list[tuple[str, object, object]]:
        """``(field, mine, other's)`` for each compared field in which ``other`` gives other
        features: another model, or a setting of it that this record names with another value
        (a record written by an older emoflow names fewer settings). Revisions are not compared
        (an older record, or a model not downloaded yet, has none): see :meth:`revision_changes`."""
        return [
            (name, a, b)
            for name, a, b in self._compared(other)
            if not (same_model(a, b) if isinstance(a, Provenance) and isinstance(b, Provenance) else a == b)
        ]

    def revision_changes(self, other: FeatureInfo) -> list[tuple[str, str, str]]:
        """``(model id, my revision, other's)`` for compared models known at both revisions."""
        return [
            (a.id, a.revision, b.revision)
            for _, a, b in self._compared(other)
            if isinstance(a, Provenance) and isinstance(b, Provenance)
            if a.revision and b.revision and a.revision != b.revision
        ]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name).to_dict() for name in RECORD_KEYS}
        d.update(top_k=self.top_k, separator=self.separator)
        if self.audio_dim is not None and self.text_dim is not None:
            d.update(audio_dim=self.audio_dim, text_dim=self.text_dim)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureInfo:
        """The inverse of :meth:`to_dict`; also reads the records of earlier emoflow versions
        (no revision or source; a trained scheme named by its ``path`` alone).
        :class:`InputError` names what is missing."""
        if not isinstance(d, Mapping):
            raise InputError(f"a feature record is a JSON object, got {type(d).__name__}")
        missing = [k for k in (*RECORD_KEYS, "top_k", "separator") if k not in d]
        if missing:
            raise InputError(f"the feature record lacks {', '.join(missing)}")

        def record(name: str) -> Provenance:
            r = d[name]
            if isinstance(r, Mapping) and "id" not in r and "path" in r:
                r = {**r, "id": r["path"], "source": "local"}
            if not isinstance(r, Mapping):
                raise InputError(f"the feature record's {name} is not a model record: {r!r}")
            return Provenance.from_dict(r)

        def width(name: str) -> int | None:
            return None if d.get(name) is None else int(d[name])

        return cls(
            record("audio_model"),
            record("text_model"),
            record("sequence_encoder"),
            record("asr_model"),
            int(d["top_k"]),
            str(d["separator"]),
            width("audio_dim"),
            width("text_dim"),
        )


def _plain(value: Any) -> Any:
    """A setting as JSON gives it back (tuples are lists), so stored and live values compare."""
    return json.loads(json.dumps(value))


def same_model(trained: Provenance, used: Provenance) -> bool:
    """Whether ``used`` is the model ``trained`` names, with every setting ``trained`` records."""
    return trained.id == used.id and all(
        k in used.options and _plain(used.options[k]) == _plain(v) for k, v in trained.options.items()
    )


def settings_hash(info: FeatureInfo | Mapping[str, Any]) -> str:
    """The hash of a feature record (or of ``features.json`` as read) that keys the cache's items."""
    d = info.to_dict() if isinstance(info, FeatureInfo) else info
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
