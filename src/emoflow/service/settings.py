"""What the service may be told: the server's settings (``emoflow serve``) and, per request,
the few analysis settings that load no other model than the server's (``top_k``, ``window``,
``hop``, ``timeline``) and the diarisation (``diarize``, ``speakers``, ``min_speakers``,
``max_speakers``, ``diarizer``: the speaker model loads on the first request that asks for it).

Both are checked here and nowhere else: :class:`ServiceSettings` when the server starts
(:class:`~emoflow.errors.ConfigError`), a request's settings when it is uploaded (422).
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from fastapi import HTTPException

from emoflow import config as cfg
from emoflow.config import MAX_REQUEST_SPEAKERS, PipelineConfig
from emoflow.errors import ConfigError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SPEAKER_COUNTS = ("speakers", "min_speakers", "max_speakers")
DIARIZATION_SETTINGS = frozenset({"diarize", "diarizer", *SPEAKER_COUNTS})
REQUEST_SETTINGS = frozenset({"top_k", "window", "hop", "timeline"}) | DIARIZATION_SETTINGS


@dataclass
class ServiceSettings:
    """What ``emoflow serve`` configures. Sizes in MB (10^6 bytes), times in seconds.

    ``host``: the interface the server binds (its name is accepted in the Host header).
    ``allowed_hosts``: the Host-header names accepted (``*.example.com`` patterns; ``*`` turns
    the check off); default: localhost, 127.0.0.1, ::1 and ``host`` (plus this machine's names
    when ``host`` is a wildcard such as 0.0.0.0). ``max_duration_s``: the longest decoded
    recording accepted when the pipeline's configuration sets no ``max_duration`` (None and
    none there: no limit).

    The live streams (``/v1/stream``): ``max_streams`` at once (one more: close 1013, try again
    later); ``max_stream_duration_s`` of audio per stream (over: an ``error``, the ``end`` of
    what came, close 1008; None: the upload limit, see :meth:`stream_duration_limit`);
    ``stream_idle_timeout_s`` without a message, ``max_stream_buffer_s`` of audio waiting for
    the models, ``stream_start_timeout_s`` for the start message (over any: ``error``, 1008).
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
    max_streams: int = cfg.STREAM_MAX_STREAMS
    max_stream_duration_s: float | None = None
    stream_idle_timeout_s: float = cfg.STREAM_IDLE_S
    max_stream_buffer_s: float = cfg.STREAM_MAX_BUFFERED_S
    stream_start_timeout_s: float = cfg.STREAM_START_TIMEOUT_S

    def __post_init__(self) -> None:
        def positive(name: str, value: Any) -> None:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")

        def whole(name: str, value: Any, least: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be a whole number, {least} or more, got {value!r}")

        positive("max_upload_mb", self.max_upload_mb)
        positive("retention_s", self.retention_s)
        for name in ("max_duration_s", "max_stream_duration_s"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        whole("queue_size", self.queue_size, 1)
        whole("workers", self.workers, 0)
        whole("max_streams", self.max_streams, 1)
        positive("stream_idle_timeout_s", self.stream_idle_timeout_s)
        positive("max_stream_buffer_s", self.max_stream_buffer_s)
        positive("stream_start_timeout_s", self.stream_start_timeout_s)
        if self.allowed_hosts is not None:
            self.allowed_hosts = tuple(self.allowed_hosts)
            for h in self.allowed_hosts:
                if not h or "*" in h[1:] or (h.startswith("*") and h != "*" and not h.startswith("*.")):
                    raise ConfigError(f"allowed host {h!r}: use a name, an address, '*.example.com' or '*'")

    @property
    def upload_limit(self) -> int:
        """The largest upload accepted, in bytes."""
        return int(self.max_upload_mb * 1e6)

    def duration_limit(self, config: PipelineConfig) -> float | None:
        """The longest recording accepted by a server with ``config``: its explicit
        ``max_duration`` (``serve --max-duration``) wins over ``max_duration_s``."""
        return config.max_duration if config.max_duration is not None else self.max_duration_s

    def stream_duration_limit(self, config: PipelineConfig) -> float | None:
        """The most audio (s) one stream may send: ``max_stream_duration_s``, or else the
        longest recording accepted (:meth:`duration_limit`); None: no limit."""
        if self.max_stream_duration_s is not None:
            return self.max_stream_duration_s
        return self.duration_limit(config)

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


# ---- per request ---------------------------------------------------------------------------
def parse_request_settings(
    text: str,
    base: PipelineConfig,
    max_duration_s: float | None = None,
    *,
    allowed: frozenset[str] = REQUEST_SETTINGS,
) -> dict[str, Any]:
    """The per-request settings from their JSON, checked against the server's configuration (422).
    ``allowed``: the settings this endpoint takes (an endpoint that cannot diarise passes
    ``REQUEST_SETTINGS - DIARIZATION_SETTINGS``)."""
    try:
        data = json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise HTTPException(422, "settings must be a flat JSON object") from None
    except ValueError:
        raise HTTPException(422, "settings must be a JSON object (NaN and Infinity are not JSON)") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "settings must be a JSON object")
    unknown = set(data) - allowed
    if unknown:
        raise HTTPException(
            422,
            f"unsupported settings: {', '.join(sorted(unknown))}; per request: "
            f"{', '.join(sorted(allowed))} (the other models are fixed when the server starts)",
        )
    try:
        request_config(base, data, max_duration_s)
    except (ConfigError, TypeError, ValueError, OverflowError) as e:
        raise HTTPException(422, f"invalid settings: {e}") from None
    return data


def request_config(
    base: PipelineConfig, data: dict[str, Any], max_duration_s: float | None = None
) -> PipelineConfig:
    """The server's configuration with the per-request settings (none of which changes a model)
    and the service's duration limit. Raises :class:`ConfigError` for a bad value."""
    tl = base.timeline
    window = _seconds(data, "window", tl.window_s)
    hop = _seconds(data, "hop", tl.hop_s)
    mode = data.get("timeline", tl.mode)
    if mode not in ("exact", "pooled"):
        raise ConfigError(f"timeline must be exact or pooled, got {mode!r}")
    top_k = data.get("top_k", base.top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 100:
        raise ConfigError(f"top_k must be a whole number from 1 to 100, got {top_k!r}")
    timeline = replace(  # its own checks run here
        tl, window_s=window, hop_s=hop, mode="exact" if mode == "exact" else "pooled"
    )
    # an explicit limit in the server's configuration (``serve --max-duration``) wins
    max_duration = base.max_duration if base.max_duration is not None else max_duration_s
    return replace(
        base, timeline=timeline, top_k=top_k, max_duration=max_duration, **_diarization(base, data)
    )


def _diarization(base: PipelineConfig, data: dict[str, Any]) -> dict[str, Any]:
    """The diarisation fields of the request's configuration: ``diarize`` (default: the
    server's), the backend, and speaker counts, which replace all of the server's when any is
    given and need diarisation on. Named as the request names them in every message."""
    diarize = data.get("diarize", base.diarize)
    if not isinstance(diarize, bool):
        raise ConfigError(f"diarize must be true or false, got {diarize!r}")
    diarizer = data.get("diarizer", base.diarizer)
    if diarizer not in ("ge2e", "pyannote"):
        raise ConfigError(f"diarizer must be ge2e or pyannote, got {diarizer!r}")
    given = {k: data[k] for k in SPEAKER_COUNTS if data.get(k) is not None}
    for k, v in given.items():
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_REQUEST_SPEAKERS:
            raise ConfigError(
                f"{k} must be a whole number from 1 to {MAX_REQUEST_SPEAKERS}, got {v!r}; "
                "leave it out to estimate the count"
            )
    if given and not diarize:
        raise ConfigError(f"{next(iter(given))} needs diarize: true (speaker counts apply to diarisation)")
    if given:
        from emoflow.diarization.base import check_speaker_count

        try:
            check_speaker_count(given.get("speakers"), given.get("min_speakers"), given.get("max_speakers"))
        except ConfigError as e:
            raise ConfigError(str(e).replace("num_speakers", "speakers")) from None
    counts = (
        {k: given.get(k) for k in SPEAKER_COUNTS}
        if given or not diarize
        else {k: getattr(base, k) for k in SPEAKER_COUNTS}
    )
    # the server's diarizer_model names a model of the server's backend: not of another one
    model = base.diarizer_model if diarizer == base.diarizer else None
    return {"diarize": diarize, "diarizer": diarizer, "diarizer_model": model, **counts}


def _seconds(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number of seconds, got {value!r}")
    return float(value)


def no_constant(name: str) -> NoReturn:
    """``parse_constant`` for :func:`json.loads`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")
