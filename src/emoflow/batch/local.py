"""Resumable corpus batches on one machine, and the run both engines share.

``emoflow batch INPUT --out DIR``: the inputs are found and named by
:mod:`~emoflow.batch.planning`; each recording's outputs are written atomically into
``DIR/<name>/``, then one line is appended to ``DIR/index.jsonl`` (status, timings, error;
see :mod:`~emoflow.batch.index`). A crash or kill at any point loses at most the recording in
flight: on restart (``--resume``, the default) recordings whose outputs are complete are
skipped, partial ones are redone. One bad file never stops the batch. At the end the index is
compacted (one line per recording, the latest) and the corpus tables ``DIR/sentences.parquet``
and ``DIR/timeline.parquet`` (and ``DIR/speakers.parquet`` when recordings were diarised) are
rebuilt from this run's inputs that are complete (analysed
now or skipped as already done): an output folder left from another input list (e.g. under a
name a later run gave to another file) stays in ``DIR`` and in the index, but not in the tables.

A run holds a lock on ``DIR`` (``DIR/.emoflow-lock``, :mod:`~emoflow.batch.lock`): a second
batch into the same folder is refused at once. Only emoflow's own temporaries
(``.emoflow-tmp.``...) left by a killed run are removed, and a corpus table with no recording
of this run left to hold; nothing else in ``DIR`` is touched.

:func:`run_resumable` is that run around an engine's own analysis: :func:`run_batch` here
(one :class:`~emoflow.pipeline.Pipeline`, one recording after another) and
:func:`~emoflow.batch.ray.run_batch_ray` (Ray Data actor pools).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emoflow.batch.index import (
    INDEX,
    Record,
    append_record,
    compact_index,
    current_ok_names,
    record_for,
    remove_stale_partials,
    save_output,
    write_corpus_tables,
)
from emoflow.batch.lock import output_lock, prepare_out
from emoflow.batch.planning import BatchItem, discover, plan
from emoflow.errors import EmoflowError, ModelUnavailableError
from emoflow.pipeline import Pipeline
from emoflow.results import ALL_FORMATS

# what a caller needs for a local batch, from one place (the CLI takes the lock before loading models)
__all__ = ["BatchItem", "BatchRun", "BatchSummary", "discover", "output_lock", "prepare_out", "run_batch"]

log = logging.getLogger(__name__)

OnItem = Callable[[BatchItem, str], None]  # (item, "skipped" | "running" | "ok" | "failed")


@dataclass
class BatchSummary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class BatchRun:
    """One run's bookkeeping in ``out``: each finished recording's index line (on disk at once),
    the summary, and the names analysed now (for the corpus tables)."""

    def __init__(self, out: Path, total: int) -> None:
        self.index = out / INDEX
        self.summary = BatchSummary(total=total)
        self.done: list[str] = []

    def ok(self, item: BatchItem, record: Record) -> None:
        append_record(self.index, record)
        self.summary.done += 1
        self.done.append(item.name)

    def failed(self, item: BatchItem, seconds: float, error: str) -> None:
        append_record(self.index, record_for(item, "failed", seconds, error=error))
        self.summary.failed.append((str(item.path), error))


Engine = Callable[[Sequence[BatchItem], BatchRun], None]  # analyses the items, reporting to the run


def run_resumable(
    items: Sequence[BatchItem],
    out: str | os.PathLike[str],
    engine: Engine,
    *,
    resume: bool = True,
    formats: Sequence[str] = ALL_FORMATS,
    on_item: OnItem | None = None,
    diarized: bool = False,
) -> BatchSummary:
    """Lock ``out``, skip what is complete, let ``engine`` analyse the rest (when there is any),
    then compact the index and rebuild the corpus tables (see the module doc). ``diarized``:
    the engine diarises (a folder without the speakers' files is not complete)."""
    out = prepare_out(out)
    with output_lock(out):
        run = BatchRun(out, len(items))
        t_start = time.perf_counter()
        remove_stale_partials(out)
        todo, skipped = plan(items, out, formats, resume, diarized)
        for item, recovered in skipped:
            run.summary.skipped += 1
            if recovered is not None:  # killed between rename and index line
                append_record(run.index, recovered)
            if on_item:
                on_item(item, "skipped")
        if todo:
            engine(todo, run)
        compact_index(out)
        if "csv" in formats:
            write_corpus_tables(out, current_ok_names(skipped, run.done))
        run.summary.seconds = time.perf_counter() - t_start
        return run.summary


def run_batch(
    items: Sequence[BatchItem],
    out: str | os.PathLike[str],
    pipeline: Pipeline,
    *,
    resume: bool = True,
    formats: Sequence[str] = ALL_FORMATS,
    on_item: OnItem | None = None,
) -> BatchSummary:
    """Analyse every item with one pipeline (models loaded once); see the module doc."""
    out = Path(out)

    def engine(todo: Sequence[BatchItem], run: BatchRun) -> None:
        for item in todo:
            if on_item:
                on_item(item, "running")
            t0 = time.perf_counter()
            try:
                result = pipeline.analyze(item.path)
                save_output(result, out, item.name, formats)
                run.ok(item, record_for(item, "ok", time.perf_counter() - t0, result.timings, result=result))
                if on_item:
                    on_item(item, "ok")
            except ModelUnavailableError:
                raise
            except Exception as e:  # one bad file never stops the batch
                msg = str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"
                if not isinstance(e, EmoflowError):
                    log.debug("%s", traceback.format_exc())
                run.failed(item, time.perf_counter() - t0, msg)
                if on_item:
                    on_item(item, "failed")

    # a stand-in for the pipeline (tests, notebooks) may have no configuration: no diarisation
    diarized = bool(getattr(getattr(pipeline, "config", None), "diarize", False))
    return run_resumable(
        items, out, engine, resume=resume, formats=formats, on_item=on_item, diarized=diarized
    )
