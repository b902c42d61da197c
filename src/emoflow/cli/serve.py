"""``emoflow serve``: the analysis over HTTP (``pip install emoflow[serve]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from emoflow import config as cfg
from emoflow.cli.common import UsageError, err, loads_models, usage_errors
from emoflow.cli.options import ANALYSIS, pipeline_config, with_options
from emoflow.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STORE = Path(cfg.SERVICE_STORE)
# the ServiceSettings field each option sets with the same value (its errors name the option)
OPTION_OF = {
    "max_upload_mb": "--max-upload-mb",
    "queue_size": "--queue-size",
    "workers": "--workers",
    "max_streams": "--max-streams",
    "max_stream_duration_s": "--max-stream-duration",
    "stream_idle_timeout_s": "--stream-idle-timeout",
    "max_stream_buffer_s": "--max-stream-buffer",
    "stream_start_timeout_s": "--stream-start-timeout",
}


def _check_port(host: str, port: int) -> None:
    """Fail now, before any model loads, when ``host:port`` cannot be listened on.

    (The server binds it again moments later; another process could take it in between.)
    """
    import socket

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e.strerror})") from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name != "nt":  # what uvicorn does: a port in TIME_WAIT is free to use
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise UsageError(
                f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host"
            ) from e


@loads_models
@with_options(
    *ANALYSIS,
    help={
        "max_duration": "Longest recording accepted, in seconds "
        f"(default for serve: {cfg.SERVICE_MAX_DURATION_S:g})."
    },
)
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")
    ] = cfg.SERVICE_HOST,
    port: Annotated[int, typer.Option(help="TCP port.")] = cfg.SERVICE_PORT,
    token: Annotated[
        str | None,
        typer.Option(envvar="EMOFLOW_TOKEN", help="Require 'Authorization: Bearer TOKEN' on the API."),
    ] = None,
    store: Annotated[Path, typer.Option(help="Where uploads and results are kept.")] = STORE,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest accepted upload (MB).")
    ] = cfg.SERVICE_MAX_UPLOAD_MB,
    queue_size: Annotated[
        int, typer.Option(help="Analyses waiting at most; beyond: 503.")
    ] = cfg.SERVICE_QUEUE_SIZE,
    workers: Annotated[
        int, typer.Option(help="Analyses at a time (one per model set is safest).")
    ] = cfg.SERVICE_WORKERS,
    retention_hours: Annotated[
        float, typer.Option(help="Results are deleted after this long.")
    ] = cfg.SERVICE_RETENTION_S / 3600,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="Also answer requests for this Host name (repeatable; '*.example.com'; '*' = any).",
        ),
    ] = None,
    max_streams: Annotated[
        int, typer.Option(help="Live streams (/v1/stream) at a time; one more is closed with 1013.")
    ] = cfg.STREAM_MAX_STREAMS,
    max_stream_duration: Annotated[
        float | None,
        typer.Option(
            help="Longest live stream, in seconds of audio; there it ends (error, then its end "
            "event, close 1008). Default: as --max-duration."
        ),
    ] = None,
    stream_idle_timeout: Annotated[
        float, typer.Option(help="Close a live stream that sends nothing for this long (s).")
    ] = cfg.STREAM_IDLE_S,
    max_stream_buffer: Annotated[
        float,
        typer.Option(
            help="Most audio (s) of a live stream waiting for the models; beyond: error, close 1008."
        ),
    ] = cfg.STREAM_MAX_BUFFERED_S,
    stream_start_timeout: Annotated[
        float, typer.Option(help="Close a live stream whose start message does not come within this (s).")
    ] = cfg.STREAM_START_TIMEOUT_S,
    *,
    options: dict[str, Any],
) -> None:
    """Serve the analysis over HTTP, with a page at / (pip install emoflow[serve])."""
    try:
        import uvicorn

        from emoflow.service.app import ServiceSettings, create_app
    except ImportError as e:
        raise ConfigError("emoflow serve needs `pip install emoflow[serve]`") from e
    from emoflow.pipeline import Pipeline

    config = pipeline_config(options)
    with usage_errors():
        try:
            settings = ServiceSettings(
                store=store,
                max_upload_mb=max_upload_mb,
                queue_size=queue_size,
                workers=workers,
                retention_s=retention_hours * 3600,
                token=token,
                host=host,
                allowed_hosts=tuple(allowed_host) if allowed_host else None,
                max_streams=max_streams,
                max_stream_duration_s=max_stream_duration,
                stream_idle_timeout_s=stream_idle_timeout,
                max_stream_buffer_s=max_stream_buffer,
                stream_start_timeout_s=stream_start_timeout,
            )
        except ConfigError as e:
            field, _, rest = str(e).partition(" ")
            raise ConfigError(f"{OPTION_OF[field]} {rest}" if field in OPTION_OF else str(e)) from None
    _check_port(host, port)  # a busy port: one error line now, not after loading every model
    if host not in LOOPBACK and not token:
        err.print(
            f"warning: serving on {host} without --token: anyone who can reach it can use it", markup=False
        )
    uvicorn.run(create_app(Pipeline(config), settings), host=host, port=port, log_level="warning")
