"""The server's settings (:class:`~emoflow.service.settings.ServiceSettings`), the live-stream
limits among them, and ``emoflow serve`` passing its options through: in process, with the
server and the models replaced (no port is served, no weights load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs emoflow[serve]")

from emoflow import cli, config
from emoflow.config import PipelineConfig
from emoflow.errors import ConfigError
from emoflow.service.settings import ServiceSettings


def test_stream_limits_default_to_the_configuration(tmp_path: Path) -> None:
    s = ServiceSettings(store=tmp_path)
    assert (s.max_streams, s.stream_idle_timeout_s) == (config.STREAM_MAX_STREAMS, config.STREAM_IDLE_S)
    assert s.max_stream_buffer_s == config.STREAM_MAX_BUFFERED_S
    assert s.stream_start_timeout_s == config.STREAM_START_TIMEOUT_S
    # a stream's length: its own limit, else the upload limit (serve --max-duration wins there)
    assert s.max_stream_duration_s is None and s.stream_duration_limit(PipelineConfig()) == 3600.0
    assert s.stream_duration_limit(PipelineConfig(max_duration=75.0)) == 75.0
    assert (
        ServiceSettings(store=tmp_path, max_duration_s=None).stream_duration_limit(PipelineConfig()) is None
    )
    own = ServiceSettings(store=tmp_path, max_stream_duration_s=7200.0)
    assert own.stream_duration_limit(PipelineConfig(max_duration=75.0)) == 7200.0


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"max_streams": 0}, "max_streams must be a whole number, 1 or more, got 0"),
        ({"max_streams": 2.5}, "max_streams must be a whole number"),
        ({"max_streams": True}, "max_streams must be a whole number"),
        ({"max_stream_duration_s": 0.0}, "max_stream_duration_s must be a positive number"),
        ({"stream_idle_timeout_s": -1.0}, "stream_idle_timeout_s must be a positive number"),
        ({"max_stream_buffer_s": float("nan")}, "max_stream_buffer_s must be a positive number"),
        ({"stream_start_timeout_s": float("inf")}, "stream_start_timeout_s must be a positive number"),
        ({"queue_size": 0}, "queue_size must be a whole number, 1 or more"),
        ({"workers": -1}, "workers must be a whole number, 0 or more"),
    ],
)
def test_bad_settings_are_one_line_config_errors(tmp_path: Path, bad: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as e:
        ServiceSettings(store=tmp_path, **bad)
    assert "\n" not in str(e.value)


def test_max_request_speakers_is_a_configured_default() -> None:
    from emoflow.service import settings

    assert settings.MAX_REQUEST_SPEAKERS == config.MAX_REQUEST_SPEAKERS == 32
    with pytest.raises(ConfigError, match="from 1 to 32"):
        settings.request_config(PipelineConfig(), {"diarize": True, "speakers": 33})


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ServiceSettings]]:
    """``emoflow serve`` with no server and no models: what it would serve, recorded."""
    pytest.importorskip("uvicorn", reason="needs emoflow[serve]")
    import uvicorn

    import emoflow.models
    import emoflow.service.app as app_module

    calls: list[tuple[Any, ServiceSettings]] = []
    monkeypatch.setattr(emoflow.models, "set_cpu_threads", lambda *a, **k: None)
    monkeypatch.setattr(
        app_module, "create_app", lambda pipeline, settings: calls.append((pipeline, settings))
    )
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    return calls


def serve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.run(["serve", "--port", "0", *args])
    return code, capsys.readouterr().err


def test_serve_passes_the_stream_limits_through(served, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, err = serve(
        capsys,
        "--store",
        str(tmp_path),
        "--max-streams",
        "3",
        "--max-stream-duration",
        "900",
        "--stream-idle-timeout",
        "12.5",
        "--max-stream-buffer",
        "7",
        "--stream-start-timeout",
        "4",
        "--max-duration",
        "1800",
    )
    assert code == 0, err
    (pipeline, s), *_ = served
    assert (s.max_streams, s.max_stream_duration_s, s.stream_idle_timeout_s) == (3, 900.0, 12.5)
    assert (s.max_stream_buffer_s, s.stream_start_timeout_s) == (7.0, 4.0)
    assert s.stream_duration_limit(pipeline.config) == 900.0
    code, err = serve(capsys, "--store", str(tmp_path), "--max-duration", "1800")
    assert code == 0, err
    s = served[-1][1]
    assert (
        s.max_streams == config.STREAM_MAX_STREAMS and s.stream_duration_limit(served[-1][0].config) == 1800.0
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-streams", "0"], "error: --max-streams must be a whole number, 1 or more, got 0"),
        (["--max-stream-duration", "-5"], "error: --max-stream-duration must be a positive number, got -5.0"),
        (["--stream-idle-timeout", "0"], "error: --stream-idle-timeout must be a positive number, got 0.0"),
        (["--max-stream-buffer", "nan"], "error: --max-stream-buffer must be a positive number, got nan"),
        (["--stream-start-timeout", "-1"], "error: --stream-start-timeout must be a positive number"),
    ],
)
def test_bad_stream_limits_exit_2_naming_the_option(served, capsys, tmp_path, args, says) -> None:  # type: ignore[no-untyped-def]
    code, err = serve(capsys, "--store", str(tmp_path), *args)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(says), err
    assert served == []  # refused before the app (and its models) were built
