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

The parts: :mod:`~emoflow.service.settings` (the server's and a request's settings),
:mod:`~emoflow.service.uploads` (taking an upload in), :mod:`~emoflow.service.jobs` (the
analyses on disk, their queue and workers), :mod:`~emoflow.service.runner` (one analysis);
this module holds the HTTP side: routes, middleware, status codes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emoflow.export.writers import all_output_files
from emoflow.pipeline import Pipeline
from emoflow.service.jobs import NoSuchJob, QueueFull, Store
from emoflow.service.settings import ServiceSettings
from emoflow.service.uploads import accept_upload

__all__ = ["ServiceSettings", "create_app"]

ALLOWED_FILES = all_output_files()  # diarised results add diarization.rttm and speakers.csv
BODY_SLACK = 100_000  # bytes of multipart framing and form fields allowed beyond the upload limit
NOT_FOUND = "no such analysis"


def _static(name: str) -> str:
    return resources.files("emoflow.service").joinpath(name).read_text(encoding="utf-8")


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes while it streams in (413), whether or not it
    declares a Content-Length: a chunked upload is never spooled beyond the limit."""

    def __init__(self, app: ASGIApp, limit: int, mb: float) -> None:
        self.app, self.limit, self.mb = app, limit, mb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # raised inside the form parser: FastAPI answers it as is
                    raise HTTPException(413, f"upload larger than {self.mb:g} MB")
            return message

        await self.app(scope, limited, send)


def create_app(pipeline: Pipeline, settings: ServiceSettings) -> FastAPI:
    """The application around an already configured :class:`~emoflow.pipeline.Pipeline`: its
    models load when the application starts (each request's settings get a pipeline derived
    from it, sharing those models)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    state: dict[str, Store] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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

    # the store's own errors, answered once for every route
    @app.exception_handler(NoSuchJob)
    async def no_such_job(request: Request, exc: NoSuchJob) -> JSONResponse:
        return JSONResponse({"detail": NOT_FOUND}, status_code=404)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse(
            {"detail": "the analysis queue is full; try again later"},
            status_code=503,
            headers={"Retry-After": "30"},
        )

    body_limit = settings.upload_limit + BODY_SLACK
    token = settings.token.encode("utf-8") if settings.token else None

    # innermost (registered first): its 413 is raised in the form parser's own task, which FastAPI
    # answers as is (raised through the guard's task group it would become a 400)
    app.add_middleware(_BodyLimit, limit=body_limit, mb=settings.max_upload_mb)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
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
            accept_upload, store(), audio.file, transcript.file if transcript else None, settings_json
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
                raise NoSuchJob(job_id) from None
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

    from emoflow.service.stream import register_stream

    register_stream(app, pipeline, settings)  # /v1/stream (WebSocket) and the /live page
    return app


def _token_matches(header: str, token: bytes) -> bool:
    """``Authorization: Bearer TOKEN``, the scheme in any case (RFC 7235)."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # bytes: compare_digest refuses str with non-ASCII characters (a header may carry any)
    return secrets.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token)


def _links(d: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/analyses/{d['id']}"
    d["links"] = {"self": base, "report": f"{base}/report", "files": f"{base}/files/"}
    return d


def _version() -> str:
    from emoflow import __version__

    return __version__
