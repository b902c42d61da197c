"""The analyses the service holds: :class:`Job` records and the :class:`Store` that keeps them
on disk, queues them and serves them with worker threads.

Each analysis lives in ``store/<id>/``: ``job.json`` (its state, rewritten atomically at each
change), ``input`` and ``transcript.json`` (the uploads, removed once analysed) and ``result/``.
At start-up the job table is rebuilt from these folders; analyses a restart interrupted are
marked failed and their uploads removed. Finished analyses expire after the retention period
(also those stored before a restart). Nothing here speaks HTTP: a missing analysis is
:class:`NoSuchJob`, a full queue :class:`QueueFull`; the app answers them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from emoflow.config import PipelineConfig
from emoflow.export.files import remove_stale_temporaries
from emoflow.pipeline import Pipeline
from emoflow.service.runner import Stopped, run_analysis
from emoflow.service.settings import ServiceSettings, request_config

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
JOB_FILE = "job.json"
UPLOADS = ("input", "transcript.json")
PIPELINE_CACHE = 8  # per-request setting combinations whose pipelines are kept
INTERRUPTED = "interrupted: the server restarted before the analysis finished; upload the recording again"
INCOMPLETE = "the stored result is incomplete; upload the recording again"
Status = Literal["queued", "running", "done", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "done", "failed")


class NoSuchJob(LookupError):
    """No analysis by this id (never was, deleted or expired)."""


class QueueFull(RuntimeError):
    """The queue holds ``queue_size`` analyses already."""


@dataclass
class Job:
    id: str
    created: float
    status: Status = "queued"
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the request's own (see settings.py)
    stage: str | None = None  # the pipeline stage a running analysis is in
    cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def public(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }
        if self.status == "running" and self.stage:
            d["stage"] = self.stage
        if self.error:
            d["error"] = self.error
        return d

    def record(self) -> dict[str, Any]:
        """What ``job.json`` holds."""
        keys = ("id", "status", "created", "started", "finished", "error", "settings")
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_record(cls, data: Any, job_id: str) -> Job | None:
        """A job from its ``job.json``, or None when the record is not one of ours."""
        if not isinstance(data, dict) or data.get("id") != job_id:
            return None
        times = [data.get(k) for k in ("created", "started", "finished")]
        if not isinstance(times[0], (int, float)) or not all(
            t is None or isinstance(t, (int, float)) for t in times
        ):
            return None
        status, error, settings = data.get("status"), data.get("error"), data.get("settings") or {}
        if status not in STATUSES or not isinstance(settings, dict):
            return None
        return cls(
            id=job_id,
            created=float(times[0]),
            status=cast(Status, status),
            error=error if isinstance(error, str) else None,
            started=times[1],
            finished=times[2],
            settings=settings,
        )


class Store:
    """Jobs on disk under ``store/<id>/`` (see the module docstring) and the workers serving them.

    ``pipeline``: the server's, with its models loaded; each request's settings get a pipeline
    derived from it (:meth:`Pipeline.derive`: the same loaded models, the request's config)."""

    def __init__(self, settings: ServiceSettings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.root = settings.store
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.pending: deque[Job] = deque()  # queued jobs in order; a deleted one leaves at once
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.stop = threading.Event()
        self._pipelines: OrderedDict[PipelineConfig, Pipeline] = OrderedDict()
        self._restore()
        self._sweep()
        self.threads = [
            threading.Thread(target=self._work, name=f"emoflow-worker-{i}", daemon=True)
            for i in range(settings.workers)
        ]
        self.threads.append(threading.Thread(target=self._expire, name="emoflow-retention", daemon=True))
        for t in self.threads:
            t.start()

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def queued(self) -> int:
        with self.lock:
            return len(self.pending)

    def get(self, job_id: str) -> Job:
        """The analysis ``job_id``; :class:`NoSuchJob` when there is none (or the id is malformed)."""
        if not ID_RE.match(job_id):
            raise NoSuchJob(job_id)
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NoSuchJob(job_id)
        return job

    def config_for(self, settings: dict[str, Any]) -> PipelineConfig:
        """The configuration a request with these (checked) settings is analysed with."""
        return request_config(self.pipeline.config, settings, self.settings.max_duration_s)

    def submit(self, job: Job) -> dict[str, Any]:
        """Queue a job whose uploads are in its folder; returns its public view as queued.
        :class:`QueueFull` (and the folder removed) when the queue is full."""
        with self.lock:
            full = len(self.pending) >= self.settings.queue_size
            if not full:
                self.jobs[job.id] = job
                self.pending.append(job)
                self._persist(job)
                self.wake.notify()
                view = job.public()  # taken now: a worker may start it before the reply is sent
        if full:
            shutil.rmtree(self.dir(job.id), ignore_errors=True)
            raise QueueFull(job.id)
        return view

    def delete(self, job_id: str) -> None:
        """Forget an analysis and remove its folder. A running one is cancelled: its worker stops
        at the next stage, removes the folder and takes the next analysis."""
        job = self.get(job_id)
        with self.lock:
            if self.jobs.pop(job_id, None) is None:
                raise NoSuchJob(job_id)
            running = job.status == "running"
            if running:
                job.cancel.set()
            elif job.status == "queued":
                with contextlib.suppress(ValueError):
                    self.pending.remove(job)  # frees its queue slot now
        if not running:
            shutil.rmtree(self.dir(job_id), ignore_errors=True)

    def pipeline_for(self, settings: dict[str, Any]) -> Pipeline:
        """A pipeline with this request's settings, sharing the server's loaded models (the last
        ``PIPELINE_CACHE`` setting combinations are kept)."""
        cfg = self.config_for(settings)
        with self.lock:
            p = self._pipelines.get(cfg)
            if p is not None:
                self._pipelines.move_to_end(cfg)
                return p
        p = self.pipeline.derive(cfg)
        with self.lock:
            p = self._pipelines.setdefault(cfg, p)
            while len(self._pipelines) > PIPELINE_CACHE:
                self._pipelines.popitem(last=False)
        return p

    def close(self) -> None:
        """Stop taking work; a running analysis stops at its next stage (marked failed)."""
        self.stop.set()
        with self.wake:
            self.wake.notify_all()

    # ---- on disk -----------------------------------------------------------------------------
    def _persist(self, job: Job) -> None:
        """Write ``job.json`` atomically; a folder deleted meanwhile is not recreated."""
        d = self.dir(job.id)
        tmp = d / f".{JOB_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(job.record()), encoding="utf-8")
            os.replace(tmp, d / JOB_FILE)
        except OSError as e:
            log.debug("analysis %s: state not written (%s)", job.id, e)

    def _restore(self) -> None:
        """Rebuild the job table from the store: finished analyses are served again (and expire
        as usual); those a restart interrupted are marked failed and their uploads removed."""
        now = time.time()
        for d in sorted(self.root.iterdir()):
            if not ID_RE.match(d.name) or d.is_symlink() or not d.is_dir():
                continue  # not one of ours: never touched
            job = self._read(d)
            if job.status == "done" and not (d / "result" / "result.json").is_file():
                job.status, job.error = "failed", INCOMPLETE
                job.finished = job.finished or now
            if job.status in ("queued", "running"):
                job.status, job.error, job.finished = "failed", INTERRUPTED, now
            if job.status == "failed":
                for name in UPLOADS:
                    (d / name).unlink(missing_ok=True)
            remove_stale_temporaries(d)  # a result save the restart interrupted
            self._persist(job)
            self.jobs[job.id] = job
        if self.jobs:
            log.info("restored %d analyses from %s", len(self.jobs), self.root)

    def _read(self, d: Path) -> Job:
        try:
            job = Job.from_record(json.loads((d / JOB_FILE).read_text(encoding="utf-8")), d.name)
        except (OSError, ValueError, RecursionError):
            job = None
        if job is not None:
            return job
        # no (readable) record: a folder from before records were kept, or cut short while created
        result = d / "result" / "result.json"
        created = d.stat().st_mtime
        if result.is_file():
            return Job(d.name, created, status="done", finished=result.stat().st_mtime)
        return Job(d.name, created, status="running")

    # ---- the worker and retention threads ------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self.wake:
                while not self.pending and not self.stop.is_set():
                    self.wake.wait(0.5)
                if self.stop.is_set():
                    return
                job = self.pending.popleft()
                job.status, job.started = "running", time.time()
                self._persist(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        d = self.dir(job.id)

        def progress(stage: str) -> None:  # called by the pipeline at every stage
            if job.cancel.is_set() or self.stop.is_set():
                raise Stopped
            job.stage = stage

        status, error = run_analysis(d, lambda: self.pipeline_for(job.settings), progress, hide=self.root)
        for name in UPLOADS:  # keep results, not uploads
            (d / name).unlink(missing_ok=True)
        with self.lock:
            cancelled = job.cancel.is_set()
            if not cancelled:
                job.status, job.error, job.finished, job.stage = status, error, time.time(), None
                self._persist(job)
        if cancelled:  # deleted while running: nobody can ask for it any more
            shutil.rmtree(d, ignore_errors=True)

    def _sweep(self) -> None:
        now = time.time()
        with self.lock:
            old = [
                j
                for j in self.jobs.values()
                if j.status in ("done", "failed")
                and (j.finished or j.created) + self.settings.retention_s < now
            ]
            for j in old:
                self.jobs.pop(j.id, None)
        for j in old:
            shutil.rmtree(self.dir(j.id), ignore_errors=True)

    def _expire(self) -> None:
        while not self.stop.wait(min(60.0, max(1.0, self.settings.retention_s / 4))):
            self._sweep()
