"""One analysis as the service runs it: the stored upload through a pipeline into ``result/``,
stopped at the next stage when cancelled, with no server-side path in what a client sees
(neither in the result nor in an error message)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from emoflow.errors import EmoflowError
from emoflow.pipeline import Pipeline
from emoflow.provenance import Provenance
from emoflow.results import Result

log = logging.getLogger(__name__)

STOPPED = "the server stopped before the analysis finished; upload the recording again"
Outcome = tuple[Literal["done", "failed"], str | None]


class Stopped(Exception):
    """Raised inside a running analysis (by its progress callback) to stop it."""


def run_analysis(
    folder: Path, pipeline: Callable[[], Pipeline], progress: Callable[[str], None], *, hide: Path
) -> Outcome:
    """Analyse ``folder/input`` (with ``folder/transcript.json`` when there is one) into
    ``folder/result``. ``pipeline`` gives the pipeline to use; ``progress`` is called at every
    stage and may raise :class:`Stopped`. Returns ``("done", None)`` or ``("failed", why)``,
    ``why`` naming no path under ``hide`` (the store). Never raises: a bug fails the analysis,
    not the worker."""
    upload, transcript = folder / "input", folder / "transcript.json"
    try:
        result = pipeline().analyze(
            upload, transcript=transcript if transcript.exists() else None, progress=progress
        )
        progress("save")
        strip_server_paths(result)
        result.save(folder / "result")
        return "done", None
    except Stopped:
        return "failed", STOPPED
    except EmoflowError as e:
        msg = str(e).replace(str(upload), "upload").replace(str(transcript), "transcript")
        return "failed", msg.replace(str(hide), "")  # no server paths
    except Exception as e:
        log.exception("analysis %s failed", folder.name)
        return "failed", f"internal error: {type(e).__name__}"


def strip_server_paths(result: Result) -> None:
    """No server-side path reaches a client: the upload's stored path goes, local model
    directories (also in the diarisation's provenance) are named by their folder name only."""
    result.source = replace(result.source, path=None)
    result.models = _strip(result.models)
    result.settings = _strip(result.settings)
    if result.diarization is not None:  # its provenance may name a local pyannote pipeline folder
        result.diarization = replace(result.diarization, backend=_strip(dict(result.diarization.backend)))


def _strip(value: Any) -> Any:
    if isinstance(value, Provenance):  # every field, as for the record it is written as
        return replace(
            value,
            id=_strip(value.id),
            revision=_strip(value.revision),
            requested_revision=_strip(value.requested_revision),
            options=_strip(dict(value.options)),
        )
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_strip(v) for v in value)
    if (
        isinstance(value, str)
        and value
        and (os.path.isabs(value) or (os.sep in value and Path(value).exists()))
    ):
        return Path(value).name
    return value
