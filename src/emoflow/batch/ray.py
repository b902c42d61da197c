"""The batch as a Ray Data pipeline (``emoflow batch --engine ray``; extra ``emoflow[ray]``).

file list → decode → speech regions, ASR and sentences → text emotion and embeddings →
emotion2vec → assemble and write. Each stage is an actor pool (``map_batches`` with a
fixed-size ``ActorPoolStrategy``), so every model loads once per actor and stages overlap
across recordings. The stages are the same methods of :class:`~emoflow.pipeline.Pipeline`
the local engine runs, so results are identical. ``--ray-address`` joins an existing
cluster; otherwise Ray starts locally.

Resources are sized from the cluster (:func:`plan_resources`): all ``5 × concurrency``
actors must fit on the nodes at once (a pool that cannot start would stall the streaming
executor for ever), so each actor asks for a share of a CPU (and of a GPU for the model
stages) that packs onto the nodes there are. Nothing may wait without a bound: Ray's
start-up is bounded, and a watchdog fails the batch with a clear error when actors stay
unplaced (or, when asked, when no recording finishes for a while). The watchdog reads Ray's
actor table through a private API; where that cannot be read (another Ray version), it says
so once and falls back to failing the batch when no recording finishes for
``BLIND_STALL_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import math
import pickle
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.batch.local import (
    INDEX,
    BatchItem,
    BatchSummary,
    _append,
    compact_index,
    current_ok_names,
    output_lock,
    plan,
    prepare_out,
    record_for,
    remove_stale_partials,
    save_output,
    write_corpus_tables,
)
from emoflow.config import PipelineConfig
from emoflow.errors import ConfigError, EmoflowError, ModelError, ModelUnavailableError
from emoflow.results import ALL_FORMATS

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 180.0  # ray.init on a busy machine takes seconds; minutes means it is stuck
PENDING_TIMEOUT_S = 120.0  # an actor the cluster cannot place for this long: the batch cannot run
# where the watchdog cannot read Ray's actor table: no recording finished for this long fails the
# batch (generous: one long recording may take most of an hour on CPU, but never a wait for ever)
BLIND_STALL_TIMEOUT_S = 3600.0
N_STAGES, N_MODEL_STAGES = 5, 3  # decode, transcribe, text, audio, write; the middle three hold models
ROW_KEYS = ("payload", "name", "error", "fatal")


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(batch["payload"])
    return [{k: batch[k][i] for k in batch} for i in range(n)]


def _batch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rows[0].keys() if rows else ROW_KEYS
    return {k: np.array([r[k] for r in rows], dtype=object) for k in keys}


def _message(e: BaseException) -> str:
    return str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"


class _Stage:
    """An actor: builds one Pipeline, loads this stage's models and runs one stage method.

    The actor is an entry point, so it owns its process's thread count: ``threads`` (its
    share of the CPUs, at least 1) is set at start and kept after its models load; model
    loading never decides it (``set_num_threads`` in a library would give every actor all
    the node's cores)."""

    method = ""
    models: tuple[str, ...] = ()  # Pipeline properties this stage uses, loaded at start

    def __init__(self, config: PipelineConfig, threads: int = 1) -> None:
        from emoflow.pipeline import Pipeline

        self.threads = max(1, int(threads))
        self._keep_threads()
        self.pipeline = Pipeline(config)
        self.load_error = ""
        self.fatal = ""
        try:
            for name in self.models:
                getattr(self.pipeline, name)
        except (ModelUnavailableError, ModelError) as e:  # every recording would fail: the batch stops
            self.load_error, self.fatal = str(e), type(e).__name__
        except Exception as e:
            self.load_error = _message(e)
        self._keep_threads()

    def _keep_threads(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _failed(self, r: dict[str, Any]) -> bool:
        if not r["error"] and self.load_error:
            r["error"], r["fatal"] = self.load_error, self.fatal
        return bool(r["error"])

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        for r in rows:
            if self._failed(r):
                continue
            work = pickle.loads(r["payload"])
            try:
                out = getattr(self.pipeline, self.method)(work)
                r["payload"] = pickle.dumps(out)
            except Exception as e:  # passed along, reported by the writer
                r["error"] = _message(e)
        self._keep_threads()
        return _batch(rows)


class DecodeStage(_Stage):
    method = "stage_decode"


class TranscribeStage(_Stage):
    method = "stage_transcribe"
    models = ("vad", "transcriber")


class TextStage(_Stage):
    method = "stage_text"
    models = ("text_classifier", "sequence_embedder")


class AudioStage(_Stage):
    method = "stage_audio"
    models = ("audio_encoder",)


class WriteStage(_Stage):
    """Assembles each result and writes its files atomically (on the node that holds the data)."""

    models = ("fusion",)

    def __init__(self, config: PipelineConfig, out: str, formats: Sequence[str], threads: int = 1) -> None:
        super().__init__(config, threads)
        self.out = Path(out)
        self.formats = list(formats)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        for r in rows:
            if self._failed(r):
                r["payload"] = b""
                continue
            try:
                work = pickle.loads(r["payload"])
                result = self.pipeline.stage_assemble(work)
                save_output(result, self.out, r["name"], self.formats)
                r["payload"] = pickle.dumps(
                    {
                        "timings": result.timings,
                        "duration_s": result.source.duration_s,
                        "sentences": len(result.sentences),
                        "sha256": result.source.sha256,
                    }
                )
            except Exception as e:
                r["error"] = _message(e)
                r["payload"] = b""
        self._keep_threads()
        return _batch(rows)


STAGES: tuple[type[_Stage], ...] = (DecodeStage, TranscribeStage, TextStage, AudioStage, WriteStage)


@dataclass(frozen=True)
class ActorShare:
    """What each stage actor asks Ray for."""

    cpus: float  # CPUs per actor (a fraction where the cluster has fewer CPUs than actors)
    gpus: float  # GPUs per model-stage actor; 0 without GPUs

    @property
    def threads(self) -> int:
        """torch threads per actor: its CPU share, at least one."""
        return max(1, int(self.cpus))


def _fits(nodes: Sequence[Mapping[str, float]], demands: Sequence[tuple[float, float]]) -> bool:
    """Whether every (cpu, gpu) demand can be placed on the nodes at once (greedy, biggest
    first, each on the node with the most room left: good enough for identical demands)."""
    free = [[float(n.get("CPU", 0.0)), float(n.get("GPU", 0.0))] for n in nodes]
    eps = 1e-6
    for cpu, gpu in sorted(demands, reverse=True, key=lambda d: (d[1], d[0])):
        room = [f for f in free if f[0] + eps >= cpu and f[1] + eps >= gpu]
        if not room:
            return False
        best = max(room, key=lambda f: (f[1] if gpu else 0.0, f[0]))
        best[0] -= cpu
        best[1] -= gpu
    return True


def plan_resources(
    nodes: Sequence[Mapping[str, float]],
    concurrency: int,
    *,
    stages: int = N_STAGES,
    model_stages: int = N_MODEL_STAGES,
) -> ActorShare:
    """CPU (and GPU) shares such that all ``stages × concurrency`` actors fit on ``nodes``
    (each a mapping of resources, as ``ray.nodes()[i]["Resources"]``) at the same time.

    A whole CPU per actor while it fits; less when it does not (5 actors on a 2-CPU machine
    get 0.38 CPU each); :class:`ConfigError` when even a hundredth of a CPU each does not fit.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency {concurrency}: give at least 1 actor per stage")
    n = stages * concurrency
    total_cpu = sum(float(x.get("CPU", 0.0)) for x in nodes)
    total_gpu = sum(float(x.get("GPU", 0.0)) for x in nodes)
    n_gpu = model_stages * concurrency if total_gpu > 0 else 0
    cpu = min(1.0, 0.95 * total_cpu / n)  # a little room for Ray's own helpers
    gpu = min(1.0, total_gpu / n_gpu) if n_gpu else 0.0
    while True:
        c = math.floor(cpu * 100) / 100
        g = math.floor(gpu * 10_000) / 10_000
        if c < 0.01 or (n_gpu and g < 0.0001):
            break
        if _fits(nodes, [(c, g)] * n_gpu + [(c, 0.0)] * (n - n_gpu)):
            return ActorShare(c, g)
        cpu, gpu = cpu * 0.9, gpu * 0.9
    raise ConfigError(
        f"the Ray cluster ({total_cpu:g} CPUs, {total_gpu:g} GPUs on {len(nodes)} node(s)) cannot hold "
        f"{n} stage actors ({stages} stages x --concurrency {concurrency}); lower --concurrency or add nodes"
    )


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail at once on a cluster address nothing answers at (ray.init would retry for minutes)."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({e}); start one with `ray start --head` "
            "or leave out --ray-address to run locally"
        ) from e


class _Quiet(logging.Filter):
    """Drops Ray's note that ray.init in a helper thread leaves SIGTERM alone: that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler" not in record.getMessage()


def start_ray(address: str | None, timeout_s: float = INIT_TIMEOUT_S) -> Callable[[], None]:
    """``ray.init`` with a bound: :class:`ConfigError` when Ray has not started in ``timeout_s``.
    Returns the function that shuts Ray down again.

    Ray starts in a helper thread, so it installs no signal handler (signals belong to the
    entry point). The thread lives until the shutdown: the processes of a local Ray die with
    the thread that started them (Linux's parent-death signal is per thread). A start that
    finishes after we gave up is shut down at once."""
    import ray

    _check_reachable(address)
    started, stop = threading.Event(), threading.Event()
    box: dict[str, BaseException] = {}

    def keeper() -> None:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                logging_level=logging.WARNING,
            )
        except BaseException as e:
            box["error"] = e
            return
        finally:
            started.set()
        stop.wait()
        ray.shutdown()

    thread = threading.Thread(target=keeper, name="emoflow-ray", daemon=True)
    quiet, worker_log = _Quiet(), logging.getLogger("ray._private.worker")
    worker_log.addFilter(quiet)
    try:
        thread.start()
        if not started.wait(timeout_s):
            stop.set()
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ConfigError(
                f"could not start {where} within {timeout_s:g} s; check `ray status` and the logs "
                "under /tmp/ray, or run with --engine local"
            )
    finally:
        worker_log.removeFilter(quiet)
    err = box.get("error")
    if isinstance(err, ConnectionError):
        raise ConfigError(
            f"could not join the Ray cluster at {address}: {err}; check the address, and for "
            "clusters with token auth use the cluster's token (RAY_AUTH_MODE=token, "
            "~/.ray/auth_token)"
        ) from err
    if err is not None:
        raise err

    def shutdown() -> None:
        stop.set()
        thread.join(timeout=120)

    return shutdown


def _job_actors(job_id: str) -> tuple[dict[str, Mapping[str, Any]] | None, str]:
    """This job's actors in Ray's actor table (id -> record), and ``""``; or ``None`` and the
    reason where the table cannot be read (it comes from a private API that may move)."""
    try:
        from ray._private import state

        table = state.actors()
    except Exception as e:
        return None, f"ray._private.state.actors() failed ({type(e).__name__}: {e})"
    if not isinstance(table, Mapping):
        return None, f"ray._private.state.actors() returned a {type(table).__name__}, not a table"
    records = list(table.items())
    if not all(isinstance(a, Mapping) and "State" in a and "JobID" in a for _, a in records):
        return None, "ray._private.state.actors() returned records without State or JobID"
    return {str(aid): a for aid, a in records if a.get("JobID") == job_id}, ""


def _unplaced(actors: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The actors that wait for resources (not yet given a worker process): id -> class."""
    return {
        aid: str(a.get("ActorClassName", "?"))
        for aid, a in actors.items()
        if a.get("State") == "PENDING_CREATION" and not a.get("Pid")
    }


class _Stopped(BaseException):
    """Raised inside the row thread to end Ray Data's wait for the next row."""


def _stop(thread: threading.Thread, timeout_s: float = 30.0) -> None:
    """End the row thread while Ray is still up: Ray Data's iterator polls in Python, and on
    any exception it shuts its executor down (cancelling the stage tasks), as on Ctrl-C."""
    import ctypes

    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Stopped))
        thread.join(timeout_s)


def consume(
    rows: Any,
    on_row: Callable[[dict[str, Any]], None],
    *,
    pending_timeout_s: float | None = PENDING_TIMEOUT_S,
    stall_timeout_s: float | None = None,
    blind_stall_timeout_s: float = BLIND_STALL_TIMEOUT_S,
    poll_s: float = 1.0,
    check_every_s: float = 5.0,
) -> None:
    """Pass each row of ``rows`` (an iterable: ``ds.iter_rows()``) to ``on_row``, under a watchdog.

    The rows are pulled in a helper thread; this thread waits for them with a timeout and
    raises :class:`ConfigError` when actors of this job stay unplaced for
    ``pending_timeout_s`` (the cluster cannot run the pipeline as asked), or when no row
    comes for ``stall_timeout_s`` (off by default: one long recording may take an hour on CPU).
    The unplaced actors are read from Ray's actor table (a private API); when it cannot be
    read, or lists no actor of this job for ``pending_timeout_s``, the watchdog is blind to
    them: it logs a warning once and, unless ``stall_timeout_s`` is given, fails the batch
    when no row comes for ``blind_stall_timeout_s``, so that nothing waits for ever.
    Errors of the pipeline itself (and of ``on_row``) are raised here as they came; on any
    error the row thread is stopped first, so the dataset's executor shuts down cleanly.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue()

    def pump() -> None:
        try:
            for r in rows:
                q.put(("row", r))
            q.put(("end", None))
        except BaseException as e:
            q.put(("error", e))

    thread = threading.Thread(target=pump, name="emoflow-ray-rows", daemon=True)
    thread.start()
    try:
        _watch(q, on_row, pending_timeout_s, stall_timeout_s, blind_stall_timeout_s, poll_s, check_every_s)
    except BaseException:
        _stop(thread)
        raise


def _watch(
    q: queue.Queue[tuple[str, Any]],
    on_row: Callable[[dict[str, Any]], None],
    pending_timeout_s: float | None,
    stall_timeout_s: float | None,
    blind_stall_timeout_s: float,
    poll_s: float,
    check_every_s: float,
) -> None:
    import ray

    job_id = ray.get_runtime_context().get_job_id()
    since: dict[str, float] = {}  # unplaced actor -> first seen
    start = last_row = last_check = time.monotonic()
    seen_actors = False  # has the table ever listed an actor of this job (the stage actors)?
    stall = stall_timeout_s  # the bound on a wait for the next row; set when blind
    blind = ""  # why the watchdog cannot see unplaced actors ("" while it can)
    while True:
        try:
            kind, value = q.get(timeout=poll_s)
        except queue.Empty:
            kind, value = "idle", None
        now = time.monotonic()
        if kind == "row":
            on_row(value)
            last_row = now
            continue
        if kind == "end":
            return
        if kind == "error":
            raise value
        if stall is not None and now - last_row > stall:
            note = f" (and the watchdog could not see Ray's actors: {blind})" if blind else ""
            raise ConfigError(
                f"the Ray batch stalled: no recording finished for {stall:g} s{note}; "
                "check `ray status`, or run with --engine local"
            )
        if pending_timeout_s is None or now - last_check < check_every_s:
            continue
        last_check = now
        actors, why = _job_actors(job_id)
        seen_actors = seen_actors or bool(actors)
        if not why and not seen_actors and now - start >= pending_timeout_s:
            why = f"Ray's actor table lists no actor of this job (job {job_id}) after {pending_timeout_s:g} s"
        if why and not blind:  # from now on only the stall bound guards this batch: say so, once
            blind = why
            if stall is None:
                stall = blind_stall_timeout_s
            log.warning(
                "the Ray watchdog cannot see which actors wait for resources: %s; the batch fails "
                "if no recording finishes for %g s",
                why,
                stall,
            )
        waiting = _unplaced(actors or {})
        since = {a: since.get(a, now) for a in waiting}
        stuck = [a for a, t in since.items() if now - t >= pending_timeout_s]
        if stuck:
            names = sorted({waiting[a] for a in stuck})
            raise ConfigError(
                f"the Ray cluster cannot start {len(stuck)} actor(s) of this batch ({', '.join(names)}) "
                f"after {pending_timeout_s:g} s: not enough free resources (free: "
                f"{_resources(ray.available_resources())} of {_resources(ray.cluster_resources())}); "
                "lower --concurrency, free the cluster or add nodes"
            )


def _resources(r: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(r.items()) if k in ("CPU", "GPU")) or "none"


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
    out = prepare_out(out)
    with output_lock(out):
        summary = BatchSummary(total=len(items))
        t_start = time.perf_counter()
        remove_stale_partials(out)
        todo, skipped = plan(items, out, formats, resume)
        for _item, recovered in skipped:
            summary.skipped += 1
            if recovered is not None:
                _append(out / INDEX, recovered)
        done: list[str] = []  # this run's recordings analysed now (ok), filled as rows come
        if todo:
            shutdown = None if ray.is_initialized() else start_ray(address, init_timeout_s)
            try:
                _run_pipeline(
                    ray,
                    todo,
                    out,
                    config,
                    formats,
                    concurrency,
                    summary,
                    done,
                    pending_timeout_s,
                    stall_timeout_s,
                    blind_stall_timeout_s,
                )
            finally:
                if shutdown is not None:
                    shutdown()
        compact_index(out)
        if "csv" in formats:
            write_corpus_tables(out, current_ok_names(skipped, done))
        summary.seconds = time.perf_counter() - t_start
        return summary


def _run_pipeline(
    ray: Any,
    todo: Sequence[BatchItem],
    out: Path,
    config: PipelineConfig,
    formats: Sequence[str],
    concurrency: int,
    summary: BatchSummary,
    done: list[str],
    pending_timeout_s: float | None,
    stall_timeout_s: float | None,
    blind_stall_timeout_s: float,
) -> None:
    from emoflow.pipeline import Work

    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    share = plan_resources(nodes, concurrency)
    log.info("Ray stage actors: %g CPU, %g GPU, %d thread(s) each", share.cpus, share.gpus, share.threads)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    rows = [
        {"payload": pickle.dumps(Work(str(i.path))), "name": i.name, "error": "", "fatal": ""} for i in todo
    ]
    ds: Any = ray.data.from_items(rows, override_num_blocks=len(rows))
    for stage in STAGES:
        args: tuple[Any, ...] = (
            (config, str(out), list(formats), share.threads)
            if stage is WriteStage
            else (config, share.threads)
        )
        kw: dict[str, Any] = {"num_cpus": share.cpus}
        if share.gpus and stage.models and stage is not WriteStage:
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
            _append(out / INDEX, record_for(item, "failed", time.perf_counter() - t0, error=r["error"]))
            summary.failed.append((str(item.path), r["error"]))
        else:
            info = pickle.loads(r["payload"])
            rec = record_for(item, "ok", time.perf_counter() - t0, info["timings"])
            rec.update(duration_s=info["duration_s"], sentences=info["sentences"], sha256=info["sha256"])
            _append(out / INDEX, rec)
            summary.done += 1
            done.append(item.name)

    consume(
        ds.iter_rows(),
        on_row,
        pending_timeout_s=pending_timeout_s,
        stall_timeout_s=stall_timeout_s,
        blind_stall_timeout_s=blind_stall_timeout_s,
    )
