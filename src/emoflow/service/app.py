"""FastAPI application: upload a recording, poll for the analysis, fetch its files.

Models load once at start. Work runs in a bounded queue served by worker threads (one
by default: one analysis at a time per model set). Safety: upload size limit (413),
non-audio or undecodable content (415/422), queue full (503 + Retry-After), random
unguessable ids, upload file names never reach the file system, only listed output files
can be fetched, analyses expire after a retention period, optional bearer token for
everything but ``/healthz``. Every script and style (the page, Swagger UI) is served by
the app itself: nothing is loaded from the network.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from emoflow.errors import ConfigError, EmoflowError
from emoflow.export.writers import OUTPUT_FILES

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
ALLOWED_FILES = frozenset(f for files in OUTPUT_FILES.values() for f in files)
CHUNK = 1 << 20


@dataclass
class ServiceSettings:
    store: Path
    max_upload_mb: float = 200.0
    queue_size: int = 8
    workers: int = 1
    retention_s: float = 24 * 3600.0
    token: str | None = None


@dataclass
class Job:
    id: str
    created: float
    status: str = "queued"  # queued, running, done, failed
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }
        if self.error:
            d["error"] = self.error
        return d


class Store:
    """Jobs on disk under ``store/<id>/``: ``input`` (the upload), ``transcript.json``, ``result/``."""

    def __init__(self, settings: ServiceSettings, pipeline: Any) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.root = settings.store
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue(maxsize=settings.queue_size)
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._work, name=f"emoflow-worker-{i}", daemon=True)
            for i in range(settings.workers)
        ]
        self.threads.append(threading.Thread(target=self._expire, name="emoflow-retention", daemon=True))
        for t in self.threads:
            t.start()

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def get(self, job_id: str) -> Job:
        if not ID_RE.match(job_id):
            raise HTTPException(404, "no such analysis")
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such analysis")
        return job

    def submit(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
        try:
            self.queue.put_nowait(job.id)
        except queue.Full:
            with self.lock:
                self.jobs.pop(job.id, None)
            shutil.rmtree(self.dir(job.id), ignore_errors=True)
            raise HTTPException(
                503, "the analysis queue is full; try again later", headers={"Retry-After": "30"}
            ) from None

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.status == "running":
            raise HTTPException(409, "the analysis is running; delete it when it has finished")
        with self.lock:
            self.jobs.pop(job_id, None)
        shutil.rmtree(self.dir(job_id), ignore_errors=True)

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                job_id = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            with self.lock:
                job = self.jobs.get(job_id)
            if job is None:  # deleted while queued
                continue
            job.status, job.started = "running", time.time()
            d = self.dir(job_id)
            try:
                transcript = d / "transcript.json" if (d / "transcript.json").exists() else None
                result = _pipeline_for(self.pipeline, job.settings).analyze(
                    d / "input", transcript=transcript
                )
                result.save(d / "result")
                job.status = "done"
            except EmoflowError as e:
                msg = (
                    str(e)
                    .replace(str(d / "input"), "upload")
                    .replace(str(d / "transcript.json"), "transcript")
                )
                job.status, job.error = "failed", msg.replace(str(self.root), "")  # no server paths
            except Exception as e:  # a bug must not kill the worker
                log.exception("analysis %s failed", job_id)
                job.status, job.error = "failed", f"internal error: {type(e).__name__}"
            finally:
                job.finished = time.time()
                (d / "input").unlink(missing_ok=True)  # keep results, not uploads

    def _expire(self) -> None:
        while not self.stop.wait(min(60.0, max(1.0, self.settings.retention_s / 4))):
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

    def close(self) -> None:
        self.stop.set()


def _static(name: str) -> str:
    return resources.files("emoflow.service").joinpath(name).read_text(encoding="utf-8")


def create_app(pipeline: Any, settings: ServiceSettings) -> FastAPI:
    """The application around an already configured :class:`~emoflow.pipeline.Pipeline`."""
    from contextlib import asynccontextmanager

    from fastapi.openapi.docs import get_swagger_ui_html

    state: dict[str, Store] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        pipeline.load_all()
        state["store"] = Store(settings, pipeline)
        yield
        state["store"].close()

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

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        # the page at / is a static shell with no data (a browser cannot send a bearer token when
        # navigating); everything that reads or creates data needs the token
        protected = path.startswith(("/v1/", "/docs", "/openapi.json", "/static/"))
        if (
            settings.token
            and protected
            and not secrets.compare_digest(
                request.headers.get("authorization", ""), f"Bearer {settings.token}"
            )
        ):
            return JSONResponse(
                {"detail": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method == "POST" and path == "/v1/analyses":
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.max_upload_mb * 1e6 + 1e5:
                return JSONResponse(
                    {"detail": f"upload larger than {settings.max_upload_mb:g} MB"}, status_code=413
                )
        response: Response = await call_next(request)
        return response

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        s = store()
        return {"status": "ok", "queued": s.queue.qsize(), "workers": settings.workers}

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
        s = store()
        job = Job(id=secrets.token_urlsafe(24), created=time.time())
        d = s.dir(job.id)
        d.mkdir(parents=True)
        try:
            limit = int(settings.max_upload_mb * 1e6)
            size = 0
            with open(d / "input", "wb") as f:  # the upload's own name is never used
                while chunk := await audio.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise HTTPException(413, f"upload larger than {settings.max_upload_mb:g} MB")
                    f.write(chunk)
            if size == 0:
                raise HTTPException(422, "the uploaded audio is empty")
            _check_audio(d / "input")
            if transcript is not None:
                data = await transcript.read(limit)
                try:
                    json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise HTTPException(422, "the transcript is not valid JSON") from None
                (d / "transcript.json").write_bytes(data)
            if settings_json:
                job.settings = _parse_settings(settings_json)
            s.submit(job)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        return JSONResponse(_links(job.public()), status_code=202)

    @app.get("/v1/analyses/{job_id}", tags=["analyses"])
    def status(job_id: str) -> dict[str, Any]:
        job = store().get(job_id)
        out = _links(job.public())
        if job.status == "done":
            d = store().dir(job_id) / "result"
            out["result"] = json.loads((d / "result.json").read_text(encoding="utf-8"))
            out["files"] = sorted(p.name for p in d.iterdir() if p.name in ALLOWED_FILES)
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


def _links(d: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/analyses/{d['id']}"
    d["links"] = {"self": base, "report": f"{base}/report", "files": f"{base}/files/"}
    return d


def _check_audio(path: Path) -> None:
    """Refuse what is not audio (415) or cannot be decoded (422) before queueing it."""
    import soundfile as sf

    try:
        sf.info(str(path))
        return
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise HTTPException(415, "the upload is not audio (no audio stream)")
            for _ in c.decode(c.streams.audio[0]):  # one frame decodes: good enough to queue
                return
            raise HTTPException(422, "the audio has no decodable frames")
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(415, "the upload is not a readable audio file") from None


def _parse_settings(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise HTTPException(422, "settings must be a JSON object") from None
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
        _request_config(object(), data, check_only=True)
    except (ConfigError, TypeError, ValueError) as e:
        raise HTTPException(422, f"invalid settings: {e}") from None
    return data


REQUEST_SETTINGS = {"top_k", "window", "hop", "timeline"}


def _request_config(base: Any, data: dict[str, Any], check_only: bool = False) -> Any:
    """The server's configuration with the per-request settings (none of which changes a model)."""
    from dataclasses import replace

    from emoflow.config import PipelineConfig
    from emoflow.speech.emotion2vec import TimelineConfig

    cfg = base if isinstance(base, PipelineConfig) else PipelineConfig()
    tl = cfg.timeline
    timeline = TimelineConfig(
        window_s=float(data.get("window", tl.window_s)),
        hop_s=float(data.get("hop", tl.hop_s)),
        mode=data.get("timeline", tl.mode),
        chunk_s=tl.chunk_s,
        context_s=tl.context_s,
    )
    top_k = int(data.get("top_k", cfg.top_k))
    return replace(cfg, timeline=timeline, top_k=top_k)


def _pipeline_for(base: Any, data: dict[str, Any]) -> Any:
    """A pipeline for one request sharing the server's loaded models."""
    if not data:
        return base
    from emoflow.pipeline import Pipeline

    return Pipeline(
        _request_config(base.config, data),
        transcriber=base._transcriber,
        audio_encoder=base.audio_encoder,
        text_classifier=base.text_classifier,
        sequence_embedder=base.sequence_embedder,
        vad=base.vad,
    )


def _version() -> str:
    from emoflow import __version__

    return __version__
