"""What the service may be told: the server's settings (``emoflow serve``) and, per request,
the few analysis settings that change no model (``top_k``, ``window``, ``hop``, ``timeline``).

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

from emoflow.config import PipelineConfig
from emoflow.errors import ConfigError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
REQUEST_SETTINGS = frozenset({"top_k", "window", "hop", "timeline"})


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

    @property
    def upload_limit(self) -> int:
        """The largest upload accepted, in bytes."""
        return int(self.max_upload_mb * 1e6)

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
    text: str, base: PipelineConfig, max_duration_s: float | None = None
) -> dict[str, Any]:
    """The per-request settings from their JSON, checked against the server's configuration (422)."""
    try:
        data = json.loads(text, parse_constant=no_constant)
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
    return replace(base, timeline=timeline, top_k=top_k, max_duration=max_duration)


def _seconds(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number of seconds, got {value!r}")
    return float(value)


def no_constant(name: str) -> NoReturn:
    """``parse_constant`` for :func:`json.loads`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")
