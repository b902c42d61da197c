"""The Ray batch's watchdog: nothing may wait without a bound.

The driver pulls the dataset's rows in a helper thread and waits for them with a timeout
(:func:`consume`). It fails the batch with a clear error when actors stay unplaced (the
cluster cannot run the pipeline as asked) or, when asked, when no recording finishes for a
while. The unplaced actors are read from Ray's actor table through a private API; where that
cannot be read (another Ray version), the watchdog says so once and falls back to failing the
batch when no recording finishes for ``BLIND_STALL_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from emoflow.errors import ConfigError

log = logging.getLogger(__name__)

PENDING_TIMEOUT_S = 120.0  # an actor the cluster cannot place for this long: the batch cannot run
# where the watchdog cannot read Ray's actor table: no recording finished for this long fails the
# batch (generous: one long recording may take most of an hour on CPU, but never a wait for ever)
BLIND_STALL_TIMEOUT_S = 3600.0
Row = dict[str, Any]


@dataclass(frozen=True)
class WatchBounds:
    """How long the driver waits, in seconds (see :func:`consume`)."""

    pending_timeout_s: float | None = PENDING_TIMEOUT_S  # an actor left unplaced (None: not watched)
    stall_timeout_s: float | None = None  # no row at all (None: only when blind, see below)
    blind_stall_timeout_s: float = BLIND_STALL_TIMEOUT_S  # no row, while the actors cannot be seen
    poll_s: float = 1.0  # the wait for a row between checks
    check_every_s: float = 5.0  # how often Ray's actor table is read


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
    """The batch's actors that wait for resources (not yet given a worker process): id -> class.
    Ray Data's own helpers (``_StatsActor``, named with a leading underscore) are not the
    batch's: on a loaded machine one may wait a few seconds for a worker process too."""
    return {
        aid: name
        for aid, a in actors.items()
        if a.get("State") == "PENDING_CREATION"
        and not a.get("Pid")
        and not (name := str(a.get("ActorClassName", "?"))).startswith("_")
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


def consume(rows: Iterable[Row], on_row: Callable[[Row], None], bounds: WatchBounds | None = None) -> None:
    """Pass each row of ``rows`` (an iterable: ``ds.iter_rows()``) to ``on_row``, under a watchdog.

    The rows are pulled in a helper thread; this thread waits for them with a timeout and
    raises :class:`ConfigError` when actors of this job stay unplaced for
    ``pending_timeout_s`` (the cluster cannot run the pipeline as asked), or when no row
    comes for ``stall_timeout_s`` (off by default: one long recording may take an hour on CPU);
    the bounds are ``bounds`` (:class:`WatchBounds`, default: its defaults).
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
        _watch(q, on_row, bounds or WatchBounds())
    except BaseException:
        _stop(thread)
        raise


def _watch(
    q: queue.Queue[tuple[str, Any]],
    on_row: Callable[[Row], None],
    bounds: WatchBounds,
) -> None:
    import ray

    pending_timeout_s = bounds.pending_timeout_s

    job_id = ray.get_runtime_context().get_job_id()
    since: dict[str, float] = {}  # unplaced actor -> first seen
    start = last_row = last_check = time.monotonic()
    seen_actors = False  # has the table ever listed an actor of this job (the stage actors)?
    stall = bounds.stall_timeout_s  # the bound on a wait for the next row; set when blind
    blind = ""  # why the watchdog cannot see unplaced actors ("" while it can)
    while True:
        try:
            kind, value = q.get(timeout=bounds.poll_s)
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
        if pending_timeout_s is None or now - last_check < bounds.check_every_s:
            continue
        last_check = now
        actors, why = _job_actors(job_id)
        seen_actors = seen_actors or bool(actors)
        if not why and not seen_actors and now - start >= pending_timeout_s:
            why = f"Ray's actor table lists no actor of this job (job {job_id}) after {pending_timeout_s:g} s"
        if why and not blind:  # from now on only the stall bound guards this batch: say so, once
            blind = why
            if stall is None:
                stall = bounds.blind_stall_timeout_s
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
