"""FastAPI application: upload a recording, poll for the analysis, fetch its files.

Models load once at start. Work runs in a bounded queue served by worker threads (one
by default: one analysis at a time per model set). Safety: upload size limit (413, enforced
while the body streams in), decoded-duration limit (413, from the file's header before
queueing, and again while decoding), non-audio or undecodable content (415/422), invalid
settings (422), queue full (503 + Retry-After), random unguessable ids, upload file names
never reach the file system, only listed output files can be fetched, no server-side paths in
results, analyses expire after a retention period (also those stored before a restart), a
Host-header allow-list (DNS rebinding), optional bearer token for everything but
``/healthz``. Uploads are checked in a worker thread, never on the event loop. A running
analysis is cancelled by deleting it (it stops at its next stage). Every script and style
(the page, Swagger UI) is served by the app itself: nothing is loaded from the network.

Each analysis lives in ``store/<id>/``: ``job.json`` (its state, rewritten atomically at each
change), ``input`` and ``transcript.json`` (the uploads, removed once analysed) and ``result/``.
At start-up the job table is rebuilt from these folders; analyses a restart interrupted are
marked failed and their uploads removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from emoflow.errors import ConfigError, EmoflowError
from emoflow.export.files import remove_stale_temporaries
from emoflow.export.writers import OUTPUT_FILES

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
ALLOWED_FILES = frozenset(f for files in OUTPUT_FILES.values() for f in files)
CHUNK = 1 << 20
JOB_FILE = "job.json"
UPLOADS = ("input", "transcript.json")
BODY_SLACK = 100_000  # bytes of multipart framing and form fields allowed beyond the upload limit
EXACT_HEADERS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "FLAC"})  # frame counts to trust
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
PIPELINE_CACHE = 8  # per-request setting combinations whose pipelines are kept
INTERRUPTED = "interrupted: the server restarted before the analysis finished; upload the recording again"
STOPPED = "the server stopped before the analysis finished; upload the recording again"


@dataclass
class ServiceSettings:
    """What ``emoflow serve`` configures. Sizes in MB (10^6 bytes), times in seconds.

    ``host``: the interface the server binds (its name is accepted in the Host header).
    ``allowed_hosts``: the Host-header names accepted (``*.example.com`` patterns; ``*`` turns
    the check off); default: localhost, 127.0.0.1, ::1 and ``host`` (plus this machine's names
    when ``host`` is a wildcard such as 0.0.0.0). ``max_duration_s``: the longest decoded
    recording accepted when the pipeline's configuration sets no ``max_duration`` (None and
    none there: no limit).
    """

    store: Path
    max_upload_mb: float = 200.0
    queue_size: int = 8
    workers: int = 1
    retention_s: float = 24 * 3600.0
    token: str | None = None
    max_duration_s: float | None = 3600.0
    host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        def positive(name: str, value: Any) -> None:
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")

        positive("max_upload_mb", self.max_upload_mb)
        positive("retention_s", self.retention_s)
        if self.max_duration_s is not None:
            positive("max_duration_s", self.max_duration_s)
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"queue_size must be at least 1, got {self.queue_size!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers!r}")
        if self.allowed_hosts is not None:
            self.allowed_hosts = tuple(self.allowed_hosts)
            for h in self.allowed_hosts:
                if not h or "*" in h[1:] or (h.startswith("*") and h != "*" and not h.startswith("*.")):
                    raise ConfigError(f"allowed host {h!r}: use a name, an address, '*.example.com' or '*'")

    def trusted_hosts(self) -> list[str]:
        """The Host-header names the server answers to (see the class docstring)."""
        if self.allowed_hosts is not None:
            hosts = list(self.allowed_hosts)
        else:
            hosts = [*LOOPBACK_HOSTS, self.host]
            if self.host in WILDCARD_HOSTS:  # bound to every interface: this machine's own names
                hosts += _machine_names()
        # Starlette compares IPv6 literals with their brackets, as they appear in a Host header
        return sorted({f"[{h}]" if ":" in h and not h.startswith("[") else h.lower() for h in hosts if h})


def _machine_names() -> list[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        with contextlib.suppress(OSError):
            names.update(str(a[4][0]) for a in socket.getaddrinfo(name, None))
    return sorted(n for n in names if n and n not in WILDCARD_HOSTS)


class _Stopped(Exception):
    """Raised inside a running analysis (through its progress callback) to stop it."""


@dataclass
class Job:
    id: str
    created: float
    status: str = "queued"  # queued, running, done, failed
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
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
        if status not in ("queued", "running", "done", "failed") or not isinstance(settings, dict):
            return None
        return cls(
            id=job_id,
            created=float(times[0]),
            status=status,
            error=error if isinstance(error, str) else None,
            started=times[1],
            finished=times[2],
            settings=settings,
        )


class Store:
    """Jobs on disk under ``store/<id>/`` (see the module docstring) and the workers serving them."""

    def __init__(self, settings: ServiceSettings, pipeline: Any) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.root = settings.store
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.pending: deque[Job] = deque()  # queued jobs in order; a deleted one leaves at once
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.stop = threading.Event()
        self._pipelines: OrderedDict[Any, Any] = OrderedDict()
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
        if not ID_RE.match(job_id):
            raise HTTPException(404, "no such analysis")
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such analysis")
        return job

    def submit(self, job: Job) -> dict[str, Any]:
        """Queue a job (503 when the queue is full); returns its public view as queued."""
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
            raise HTTPException(
                503, "the analysis queue is full; try again later", headers={"Retry-After": "30"}
            )
        return view

    def delete(self, job_id: str) -> None:
        """Forget an analysis and remove its folder. A running one is cancelled: its worker stops
        at the next stage, removes the folder and takes the next analysis."""
        job = self.get(job_id)
        with self.lock:
            if self.jobs.pop(job_id, None) is None:
                raise HTTPException(404, "no such analysis")
            running = job.status == "running"
            if running:
                job.cancel.set()
            elif job.status == "queued":
                with contextlib.suppress(ValueError):
                    self.pending.remove(job)  # frees its queue slot now
        if not running:
            shutil.rmtree(self.dir(job_id), ignore_errors=True)

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
                job.status, job.error = (
                    "failed",
                    "the stored result is incomplete; upload the recording again",
                )
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
                raise _Stopped
            job.stage = stage

        status, error = "failed", None
        try:
            transcript = d / "transcript.json" if (d / "transcript.json").exists() else None
            result = self.pipeline_for(job.settings).analyze(
                d / "input", transcript=transcript, progress=progress
            )
            progress("save")
            _strip_server_paths(result)
            result.save(d / "result")
            status = "done"
        except _Stopped:
            error = STOPPED
        except EmoflowError as e:
            msg = str(e).replace(str(d / "input"), "upload").replace(str(d / "transcript.json"), "transcript")
            error = msg.replace(str(self.root), "")  # no server paths
        except Exception as e:  # a bug must not kill the worker
            log.exception("analysis %s failed", job.id)
            error = f"internal error: {type(e).__name__}"
        for name in UPLOADS:  # keep results, not uploads
            (d / name).unlink(missing_ok=True)
        with self.lock:
            cancelled = job.cancel.is_set()
            if not cancelled:
                job.status, job.error, job.finished, job.stage = status, error, time.time(), None
                self._persist(job)
        if cancelled:  # deleted while running: nobody can ask for it any more
            shutil.rmtree(d, ignore_errors=True)

    def pipeline_for(self, data: dict[str, Any]) -> Any:
        """A pipeline with this request's settings, sharing the server's loaded models."""
        from emoflow.pipeline import Pipeline

        base = self.pipeline
        cfg = _request_config(base.config, data, self.settings.max_duration_s)
        with self.lock:
            p = self._pipelines.get(cfg)
            if p is not None:
                self._pipelines.move_to_end(cfg)
                return p
        p = Pipeline(
            cfg,
            transcriber=base.transcriber,
            audio_encoder=base.audio_encoder,
            text_classifier=base.text_classifier,
            sequence_embedder=base.sequence_embedder,
            vad=base.vad,
        )
        with self.lock:
            p = self._pipelines.setdefault(cfg, p)
            while len(self._pipelines) > PIPELINE_CACHE:
                self._pipelines.popitem(last=False)
        return p

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

    def close(self) -> None:
        """Stop taking work; a running analysis stops at its next stage (marked failed)."""
        self.stop.set()
        with self.wake:
            self.wake.notify_all()


def _static(name: str) -> str:
    return resources.files("emoflow.service").joinpath(name).read_text(encoding="utf-8")


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes while it streams in (413), whether or not it
    declares a Content-Length: a chunked upload is never spooled beyond the limit."""

    def __init__(self, app: Any, limit: int, mb: float) -> None:
        self.app, self.limit, self.mb = app, limit, mb

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # raised inside the form parser: FastAPI answers it as is
                    raise HTTPException(413, f"upload larger than {self.mb:g} MB")
            return message

        await self.app(scope, limited, send)


def create_app(pipeline: Any, settings: ServiceSettings) -> FastAPI:
    """The application around an already configured :class:`~emoflow.pipeline.Pipeline`."""
    from contextlib import asynccontextmanager

    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    state: dict[str, Store] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        from emoflow import models

        models.set_cpu_threads()  # the entry point owns the thread policy; model loading does not
        pipeline.load_all()
        store = Store(settings, pipeline)
        store.pipeline_for({}).load_all()  # the default request pipeline (and fusion model) now
        state["store"] = store
        yield
        store.close()

    app = FastAPI(
        title="emoflow",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        description="Multimodal emotion recognition from speech and text.",
    )
    try:
        import swagger_ui_bundle
        from fastapi.staticfiles import StaticFiles

        app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
        has_swagger = True
    except ImportError:
        has_swagger = False

    def store() -> Store:
        return state["store"]

    body_limit = int(settings.max_upload_mb * 1e6) + BODY_SLACK
    token = settings.token.encode("utf-8") if settings.token else None

    # innermost (registered first): its 413 is raised in the form parser's own task, which FastAPI
    # answers as is (raised through the guard's task group it would become a 400)
    app.add_middleware(_BodyLimit, limit=body_limit, mb=settings.max_upload_mb)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        # the page at / is a static shell with no data (a browser cannot send a bearer token when
        # navigating); everything that reads or creates data needs the token
        protected = path.startswith(("/v1/", "/docs", "/openapi.json", "/static/"))
        if token and protected and not _token_matches(request.headers.get("authorization", ""), token):
            return JSONResponse(
                {"detail": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > body_limit:  # refused before reading
            return JSONResponse(
                {"detail": f"upload larger than {settings.max_upload_mb:g} MB"}, status_code=413
            )
        response: Response = await call_next(request)
        return response

    # outermost: a page on another site that rebinds its name to this server is refused (DNS rebinding)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts())

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "queued": store().queued(), "workers": settings.workers}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _static("page.html")

    if has_swagger:

        @app.get("/docs", include_in_schema=False)
        def docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="emoflow API",
                swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                swagger_css_url="/static/swagger/swagger-ui.css",
                swagger_favicon_url="/static/swagger/favicon-32x32.png",
            )

    @app.post("/v1/analyses", status_code=202, tags=["analyses"])
    async def create(
        audio: UploadFile = File(..., description="The recording (any common audio format)."),
        transcript: UploadFile | None = File(None, description="Optional CrisperWhisper JSON."),
        settings_json: str | None = Form(
            None, alias="settings", description='Optional JSON, e.g. {"top_k": 2}'
        ),
    ) -> JSONResponse:
        # copying, probing and checking the upload block: a worker thread does it, so that
        # /healthz and status polls are answered meanwhile
        view = await run_in_threadpool(
            _accept, store(), settings, audio.file, transcript.file if transcript else None, settings_json
        )
        return JSONResponse(_links(view), status_code=202)

    @app.get("/v1/analyses/{job_id}", tags=["analyses"])
    def status(job_id: str) -> dict[str, Any]:
        job = store().get(job_id)
        out = _links(job.public())
        if job.status == "done":
            d = store().dir(job_id) / "result"
            try:
                out["result"] = json.loads((d / "result.json").read_text(encoding="utf-8"))
                out["files"] = sorted(p.name for p in d.iterdir() if p.name in ALLOWED_FILES)
            except FileNotFoundError:  # deleted (or expired) between the lookup and the read
                raise HTTPException(404, "no such analysis") from None
        return out

    @app.get("/v1/analyses/{job_id}/report", response_class=HTMLResponse, tags=["analyses"])
    def report(job_id: str) -> FileResponse:
        return _file(job_id, "report.html")

    @app.get("/v1/analyses/{job_id}/files/{name}", tags=["analyses"])
    def file(job_id: str, name: str) -> FileResponse:
        return _file(job_id, name)

    @app.delete("/v1/analyses/{job_id}", status_code=204, tags=["analyses"])
    def delete(job_id: str) -> Response:
        store().delete(job_id)
        return Response(status_code=204)

    def _file(job_id: str, name: str) -> FileResponse:
        job = store().get(job_id)
        if name not in ALLOWED_FILES:  # a fixed list: no path from the request reaches the file system
            raise HTTPException(404, "no such file")
        if job.status != "done":
            raise HTTPException(409, f"the analysis is {job.status}")
        path = store().dir(job_id) / "result" / name
        if not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path, filename=name if not name.endswith(".html") else None)

    return app


def _token_matches(header: str, token: bytes) -> bool:
    """``Authorization: Bearer TOKEN``, the scheme in any case (RFC 7235)."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # bytes: compare_digest refuses str with non-ASCII characters (a header may carry any)
    return secrets.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token)


def _accept(
    s: Store,
    settings: ServiceSettings,
    audio: IO[bytes],
    transcript: IO[bytes] | None,
    settings_json: str | None,
) -> dict[str, Any]:
    """Check and store one upload, then queue it (blocking: runs in a worker thread); returns
    the job's public view."""
    job = Job(id=secrets.token_urlsafe(24), created=time.time())
    if settings_json:
        job.settings = _parse_settings(settings_json, s.pipeline.config, settings.max_duration_s)
    cfg = _request_config(s.pipeline.config, job.settings, settings.max_duration_s)
    d = s.dir(job.id)
    d.mkdir(parents=True)
    try:
        limit = int(settings.max_upload_mb * 1e6)
        too_big = HTTPException(413, f"upload larger than {settings.max_upload_mb:g} MB")
        size = 0
        with open(d / "input", "wb") as f:  # the upload's own name is never used
            while chunk := audio.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_big
                f.write(chunk)
        if size == 0:
            raise HTTPException(422, "the uploaded audio is empty")
        duration = _check_audio(d / "input", cfg.max_duration)
        if duration is not None:  # too many timeline windows for this hop: refused now, not later
            try:
                cfg.timeline.check_duration(duration, "the upload")
            except ConfigError as e:
                raise HTTPException(422, str(e).replace("--hop", "hop")) from None
        if transcript is not None:
            data = transcript.read(limit + 1)
            if len(data) > limit:
                raise too_big
            _check_transcript(data)
            (d / "transcript.json").write_bytes(data)
        return s.submit(job)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise


def _links(d: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/analyses/{d['id']}"
    d["links"] = {"self": base, "report": f"{base}/report", "files": f"{base}/files/"}
    return d


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _check_audio(path: Path, max_duration_s: float | None = None) -> float | None:
    """Refuse, before queueing, what is not audio (415), cannot be decoded or holds NaN/inf
    samples (422), or is longer than ``max_duration_s`` by its header (413). Returns the
    duration its header states (None: unknown; the decoder checks the limit again)."""
    import numpy as np
    import soundfile as sf

    from emoflow.audio.io import probe_duration

    try:
        info: Any = sf.info(str(path))
    except Exception:
        info = None
    if info is None:
        try:
            import av

            with av.open(str(path)) as c:
                if not c.streams.audio:
                    raise HTTPException(415, "the upload is not audio (no audio stream)")
                for _ in c.decode(c.streams.audio[0]):  # one frame decodes: good enough to queue
                    break
                else:
                    raise HTTPException(422, "the audio has no decodable frames")
        except HTTPException:
            raise
        except Exception:
            raise HTTPException(415, "the upload is not a readable audio file") from None
    elif info.frames == 0 and info.format in EXACT_HEADERS:
        raise HTTPException(422, "the audio has zero samples")
    duration = probe_duration(path)
    if max_duration_s is not None and duration is not None and duration > max_duration_s:
        raise HTTPException(
            413,
            f"the recording is {_hms(duration)} long; this server accepts at most {_hms(max_duration_s)} "
            "(cut it, or ask for a longer --max-duration)",
        )
    if info is not None and info.subtype in ("FLOAT", "DOUBLE"):
        # only floating-point samples can be NaN or infinite; reading them undecoded is quick
        try:
            with sf.SoundFile(str(path)) as f:
                for block in f.blocks(blocksize=1 << 16, dtype="float32"):
                    if not np.isfinite(block).all():
                        raise HTTPException(
                            422, "the audio contains NaN or infinite samples; re-export it as PCM"
                        )
        except HTTPException:
            raise
        except Exception:
            raise HTTPException(422, "the audio data is corrupt") from None
    return duration


def _check_transcript(data: bytes) -> None:
    """Well-formed JSON (an object or a list, not nested without end) or 422."""
    try:
        parsed = json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise HTTPException(422, "the transcript is nested too deeply to be a transcript") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise HTTPException(422, "the transcript is not valid JSON") from None
    if not isinstance(parsed, (dict, list)):
        raise HTTPException(422, "the transcript must be a JSON object or list")
    from emoflow.asr.transcript_io import raw_words_from_json

    try:  # word times and probabilities (NaN, 1e400, 1e308 ...) are checked now, not in the job
        raw_words_from_json(parsed, "transcript")
    except EmoflowError as e:
        raise HTTPException(422, str(e)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


REQUEST_SETTINGS = {"top_k", "window", "hop", "timeline"}


def _parse_settings(text: str, base: Any = None, max_duration_s: float | None = None) -> dict[str, Any]:
    """The per-request settings from their JSON, checked against the server's configuration (422)."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise HTTPException(422, "settings must be a flat JSON object") from None
    except ValueError:
        raise HTTPException(422, "settings must be a JSON object (NaN and Infinity are not JSON)") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "settings must be a JSON object")
    unknown = set(data) - REQUEST_SETTINGS
    if unknown:
        raise HTTPException(
            422,
            f"unsupported settings: {', '.join(sorted(unknown))}; per request: "
            f"{', '.join(sorted(REQUEST_SETTINGS))} (models are fixed when the server starts)",
        )
    try:
        _request_config(base, data, max_duration_s)
    except (ConfigError, TypeError, ValueError, OverflowError) as e:
        raise HTTPException(422, f"invalid settings: {e}") from None
    return data


def _request_config(base: Any, data: dict[str, Any], max_duration_s: float | None = None) -> Any:
    """The server's configuration with the per-request settings (none of which changes a model)
    and the service's duration limit. Raises :class:`ConfigError` for a bad value."""
    from emoflow.config import PipelineConfig

    cfg = base if isinstance(base, PipelineConfig) else PipelineConfig()
    tl = cfg.timeline
    window = _seconds(data, "window", tl.window_s)
    hop = _seconds(data, "hop", tl.hop_s)
    mode = data.get("timeline", tl.mode)
    if mode not in ("exact", "pooled"):
        raise ConfigError(f"timeline must be exact or pooled, got {mode!r}")
    top_k = data.get("top_k", cfg.top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise ConfigError(f"top_k must be a whole number from 1 to 100, got {top_k!r}")
    timeline = replace(  # its own checks run here
        tl, window_s=window, hop_s=hop, mode="exact" if mode == "exact" else "pooled"
    )
    # an explicit limit in the server's configuration (``serve --max-duration``) wins
    max_duration = cfg.max_duration if cfg.max_duration is not None else max_duration_s
    return replace(cfg, timeline=timeline, top_k=top_k, max_duration=max_duration)


def _seconds(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number of seconds, got {value!r}")
    return float(value)


def _strip_server_paths(result: Any) -> None:
    """No server-side path reaches a client: the upload's stored path goes, local model
    directories are named by their folder name only."""
    result.source = replace(result.source, path=None)
    result.models = _strip(result.models)
    result.settings = _strip(result.settings)


def _strip(value: Any) -> Any:
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


def _version() -> str:
    from emoflow import __version__

    return __version__
