"""Training data for the fusion model: manifests and the standard emotion datasets.

The public face of two modules, so ``from emoflow.fusion.datasets import ...`` keeps working:

- :mod:`emoflow.fusion.manifest`: the manifest format (:class:`ManifestRow`, reading, writing,
  label checks) and speaker-independent splits;
- :mod:`emoflow.fusion.adapters`: manifests built from the layouts of RAVDESS, CREMA-D,
  IEMOCAP and MELD (:func:`build_manifest`), and :func:`find_files`.
"""

from __future__ import annotations

from emoflow.fusion.adapters import (
    CREMAD_MAP,
    IEMOCAP_MAP,
    LAYOUTS,
    MELD_MAP,
    RAVDESS_MAP,
    build_cremad,
    build_iemocap,
    build_manifest,
    build_meld,
    build_ravdess,
    find_files,
)
from emoflow.fusion.manifest import (
    CANDIDATES,
    COLUMNS,
    ManifestRow,
    check_labels,
    leave_speakers_out,
    read_manifest,
    speaker_split,
    write_manifest,
)

__all__ = [
    "CANDIDATES",
    "COLUMNS",
    "CREMAD_MAP",
    "IEMOCAP_MAP",
    "LAYOUTS",
    "MELD_MAP",
    "RAVDESS_MAP",
    "ManifestRow",
    "build_cremad",
    "build_iemocap",
    "build_manifest",
    "build_meld",
    "build_ravdess",
    "check_labels",
    "find_files",
    "leave_speakers_out",
    "read_manifest",
    "speaker_split",
    "write_manifest",
]
