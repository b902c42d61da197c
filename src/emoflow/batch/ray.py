"""The batch as a Ray Data pipeline (``emoflow batch --engine ray``; extra ``emoflow[ray]``).

file list → decode → speech regions, ASR and sentences (with ``--diarize``, their speakers:
the diarizer loads in that actor) → text emotion and embeddings → emotion2vec → assemble and
write. Each stage is an actor pool (``map_batches`` with a
fixed-size ``ActorPoolStrategy``), so every model loads once per actor and stages overlap
across recordings. The stages are the same methods of :class:`~emoflow.pipeline.Pipeline`
the local engine runs, so results are identical; the output folder, index and summary are
the local engine's too (:func:`~emoflow.batch.local.run_resumable`). ``--ray-address`` joins
an existing cluster; otherwise Ray starts locally.

Each actor's share of the cluster and Ray's bounded start-up: :mod:`~emoflow.batch.ray_cluster`.
Nothing may wait without a bound: :mod:`~emoflow.batch.ray_watchdog` fails the batch with a
clear error when actors stay unplaced (or, when asked, when no recording finishes for a while).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np

from emoflow.batch.index import record_for, result_summary, save_output
from emoflow.batch.local import BatchRun, BatchSummary, run_resumable
from emoflow.batch.planning import BatchItem
from emoflow.batch.ray_cluster import INIT_TIMEOUT_S, plan_resources, start_ray
from emoflow.batch.ray_watchdog import BLIND_STALL_TIMEOUT_S, PENDING_TIMEOUT_S, WatchBounds, consume
from emoflow.config import PipelineConfig
from emoflow.errors import ConfigError, EmoflowError, ModelError, ModelUnavailableError
from emoflow.pipeline import Pipeline, Work
from emoflow.results import ALL_FORMATS

log = logging.getLogger(__name__)

RowKey = Literal["payload", "name", "error", "fatal"]
ROW_KEYS: tuple[RowKey, ...] = ("payload", "name", "error", "fatal")
Batch = dict[str, np.ndarray]  # what map_batches hands an actor: one object array per column


class Row(TypedDict):
    """One recording between the stages: its ``Work`` pickled (``b""`` once it failed), its
    output name, the first error met and, when a model could not load, that error's class."""

    payload: bytes
    name: str
    error: str
    fatal: str


def _rows(batch: Batch) -> list[Row]:
    return [
        Row(payload=p, name=n, error=e, fatal=f)
        for p, n, e, f in zip(batch["payload"], batch["name"], batch["error"], batch["fatal"], strict=True)
    ]


def _batch(rows: list[Row]) -> Batch:
    return {k: np.array([r[k] for r in rows], dtype=object) for k in ROW_KEYS}


def _message(e: BaseException) -> str:
    return str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"


class _Stage:
    """An actor: builds one Pipeline, loads this stage's models (:meth:`load`) and runs one
    stage (:meth:`step`) on each recording.

    The actor is an entry point, so it owns its process's thread count: ``threads`` (its
    share of the CPUs, at least 1) is set at start and kept after its models load; model
    loading never decides it (``set_num_threads`` in a library would give every actor all
    the node's cores)."""

    gpu = False  # whether its actors take a share of the GPUs (the stages that run models)

    def __init__(self, config: PipelineConfig, threads: int = 1) -> None:
        self.threads = max(1, int(threads))
        self._keep_threads()
        self.pipeline = Pipeline(config)
        self.load_error = ""
        self.fatal = ""
        try:
            self.load()
        except (ModelUnavailableError, ModelError) as e:  # every recording would fail: the batch stops
            self.load_error, self.fatal = str(e), type(e).__name__
        except Exception as e:
            self.load_error = _message(e)
        self._keep_threads()

    def load(self) -> None:
        """Load the models this stage uses, once, when the actor starts."""

    def step(self, work: Work) -> Work:
        raise NotImplementedError

    def _keep_threads(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _failed(self, r: Row) -> bool:
        if not r["error"] and self.load_error:
            r["error"], r["fatal"] = self.load_error, self.fatal
        return bool(r["error"])

    def __call__(self, batch: Batch) -> Batch:
        rows = _rows(batch)
        for r in rows:
            if self._failed(r):
                continue
            work = pickle.loads(r["payload"])
            try:
                r["payload"] = pickle.dumps(self.step(work))
            except Exception as e:  # passed along, reported by the writer
                r["error"] = _message(e)
        self._keep_threads()
        return _batch(rows)


class DecodeStage(_Stage):
    def step(self, work: Work) -> Work:
        return self.pipeline.stage_decode(work)


class TranscribeStage(_Stage):
    """Speech regions, ASR and sentences, and with ``diarize`` the speakers: the diarisation runs
    inside :meth:`~emoflow.pipeline.Pipeline.stage_transcribe` (before the sentences go on), so
    this actor builds the diarizer too, once, with its other models and within its CPU share."""

    gpu = True

    def load(self) -> None:
        _ = (self.pipeline.vad, self.pipeline.transcriber, self.pipeline.diarizer)

    def step(self, work: Work) -> Work:
        return self.pipeline.stage_transcribe(work)


class TextStage(_Stage):
    gpu = True

    def load(self) -> None:
        _ = (self.pipeline.text_classifier, self.pipeline.sequence_embedder)

    def step(self, work: Work) -> Work:
        return self.pipeline.stage_text(work)


class AudioStage(_Stage):
    gpu = True

    def load(self) -> None:
        _ = self.pipeline.audio_encoder

    def step(self, work: Work) -> Work:
        return self.pipeline.stage_audio(work)


class WriteStage(_Stage):
    """Assembles each result and writes its files atomically (on the node that holds the data).
    It loads only the fusion classifier (when one is configured): the models' provenance comes
    from the configuration, so no other model loads here."""

    def __init__(self, config: PipelineConfig, out: str, formats: Sequence[str], threads: int = 1) -> None:
        super().__init__(config, threads)
        self.out = Path(out)
        self.formats = list(formats)

    def load(self) -> None:
        _ = self.pipeline.fusion

    def __call__(self, batch: Batch) -> Batch:
        rows = _rows(batch)
        for r in rows:
            if self._failed(r):
                r["payload"] = b""
                continue
            try:
                work = pickle.loads(r["payload"])
                result = self.pipeline.stage_assemble(work)
                save_output(result, self.out, r["name"], self.formats)
                r["payload"] = pickle.dumps({"timings": result.timings, **result_summary(result)})
            except Exception as e:
                r["error"] = _message(e)
                r["payload"] = b""
        self._keep_threads()
        return _batch(rows)


STAGES: tuple[type[_Stage], ...] = (DecodeStage, TranscribeStage, TextStage, AudioStage, WriteStage)


def run_batch_ray(
    items: Sequence[BatchItem],
    out: str | Path,
    config: PipelineConfig,
    *,
    resume: bool = True,
    formats: Sequence[str] = ALL_FORMATS,
    address: str | None = None,
    concurrency: int = 1,
    init_timeout_s: float = INIT_TIMEOUT_S,
    pending_timeout_s: float | None = PENDING_TIMEOUT_S,
    stall_timeout_s: float | None = None,
    blind_stall_timeout_s: float = BLIND_STALL_TIMEOUT_S,
) -> BatchSummary:
    """The batch on Ray (see the module doc); the same outputs, index and summary as
    :func:`~emoflow.batch.local.run_batch`."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("the Ray engine needs `pip install emoflow[ray]`") from e
    if concurrency < 1:
        raise ConfigError(f"--concurrency {concurrency}: give at least 1 actor per stage")
    bounds = WatchBounds(pending_timeout_s, stall_timeout_s, blind_stall_timeout_s)
    out = Path(out)

    def engine(todo: Sequence[BatchItem], run: BatchRun) -> None:
        shutdown = None if ray.is_initialized() else start_ray(address, init_timeout_s)
        try:
            _run_pipeline(todo, out, config, formats, concurrency, run, bounds)
        finally:
            if shutdown is not None:
                shutdown()

    return run_resumable(items, out, engine, resume=resume, formats=formats, diarized=config.diarize)


def _run_pipeline(
    todo: Sequence[BatchItem],
    out: Path,
    config: PipelineConfig,
    formats: Sequence[str],
    concurrency: int,
    run: BatchRun,
    bounds: WatchBounds,
) -> None:
    """The stage actor pools over ``todo``; each finished row goes to ``run`` as it comes."""
    import ray

    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    share = plan_resources(nodes, concurrency)
    log.info("Ray stage actors: %g CPU, %g GPU, %d thread(s) each", share.cpus, share.gpus, share.threads)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    rows = [Row(payload=pickle.dumps(Work(str(i.path))), name=i.name, error="", fatal="") for i in todo]
    ds: Any = ray.data.from_items(rows, override_num_blocks=len(rows))
    for stage in STAGES:
        args: tuple[object, ...] = (
            (config, str(out), list(formats), share.threads)
            if stage is WriteStage
            else (config, share.threads)
        )
        kw: dict[str, float] = {"num_cpus": share.cpus}
        if share.gpus and stage.gpu:
            kw["num_gpus"] = share.gpus  # model stages share the GPUs
        ds = ds.map_batches(
            stage,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            fn_constructor_args=args,
            **kw,
        )
    by_name = {i.name: i for i in todo}
    t0 = time.perf_counter()

    def on_row(r: dict[str, Any]) -> None:
        item = by_name[r["name"]]
        if r["fatal"]:  # a model could not load: every recording would fail the same way
            cls = ModelError if r["fatal"] == "ModelError" else ModelUnavailableError
            raise cls(r["error"])
        if r["error"]:
            run.failed(item, time.perf_counter() - t0, r["error"])
        else:
            info = pickle.loads(r["payload"])
            rec = record_for(item, "ok", time.perf_counter() - t0, info.pop("timings"))
            rec.update(info)  # the result's summary (index.result_summary)
            run.ok(item, rec)

    consume(ds.iter_rows(), on_row, bounds)
