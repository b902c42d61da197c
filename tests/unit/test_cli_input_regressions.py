"""Regressions of issues 10 and 11 at the command line and the input boundary: options, outputs
and limits are checked before any model loads; every input problem is one ``error:`` line.

The CLI runs in this process (``emoflow.cli.run``) with model loading replaced, so these
tests need no model and take well under a second each.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emoflow import cli
from emoflow.errors import AudioError, ConfigError, ModelUnavailableError


@pytest.fixture(autouse=True)
def no_thread_policy(monkeypatch):
    """The CLI sets torch's thread count once per run; here it must not change the test process."""
    import emoflow.models

    calls: list[object] = []
    monkeypatch.setattr(emoflow.models, "set_cpu_threads", lambda *a, **k: calls.append(a))
    return calls


@pytest.fixture
def no_models(monkeypatch):
    """Loading models is an error: everything checked here must fail before it."""
    from emoflow.pipeline import Pipeline

    def refuse(self, asr=True):
        raise AssertionError("models were loaded")

    monkeypatch.setattr(Pipeline, "load_all", refuse)


def emoflow(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- 10.12: help texts keep their square brackets ---------------------------------------------


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def test_every_help_keeps_its_square_brackets(capsys):
    import typer

    root = typer.main.get_command(cli.app)
    found = set()
    for path, cmd in _commands(root):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        tokens = {t for text in texts for t in re.findall(r"\[[^\]\s]+\]", text)}
        code, out, _ = emoflow(capsys, *path, "--help")
        assert code == 0
        for token in tokens:
            assert token in out, f"emoflow {' '.join(path)} --help lost {token}"
        found |= tokens
    assert {"[serve]", "[ray]", "[UM]"} <= found  # the test looks where the brackets are
    _, out, _ = emoflow(capsys, "serve", "--help")
    assert "pip install emoflow[serve]" in " ".join(out.split())


# ---- 10.3: the entry point owns the thread policy -----------------------------------------------


def test_the_cli_sets_the_thread_policy_once_per_model_command(capsys, tmp_path, no_thread_policy, no_models):
    emoflow(capsys, "analyze", wav(tmp_path / "a.wav"), "--window", "nan")
    assert len(no_thread_policy) == 1
    t = tmp_path / "t.json"
    t.write_text(json.dumps({"chunks": [{"text": " Hi.", "timestamp": [0.1, 0.4]}]}))
    code, _, _ = emoflow(capsys, "sentences", t)
    assert code == 0 and len(no_thread_policy) == 1  # no model, no torch: left alone


# ---- 11.2: two inputs never share an output -----------------------------------------------------


def test_inputs_with_the_same_name_are_refused_before_any_work(capsys, tmp_path, no_models):
    a, b = wav(tmp_path / "in" / "talk.wav"), wav(tmp_path / "in" / "x" / "talk.wav", 1.5)
    out = tmp_path / "out"
    code, _, err = emoflow(capsys, "analyze", a, b, "--out", out)
    line = one_error_line(err)
    assert code == 2 and str(a) in line and str(b) in line and str(out / "talk") in line
    assert not out.exists()
    c = wav(tmp_path / "in" / "y" / "TALK.flac", 0.5)  # one folder on case-insensitive disks
    code, _, err = emoflow(capsys, "analyze", a, c, "--out", out)
    assert code == 2 and str(c) in one_error_line(err)
    code, _, err = emoflow(capsys, "analyze", a, a, "--out", out)
    assert code == 2 and "given twice" in one_error_line(err)


def test_a_users_folder_with_a_recordings_name_is_never_replaced(capsys, tmp_path, no_models):
    a = wav(tmp_path / "notes.wav")
    mine = tmp_path / "out" / "notes"
    mine.mkdir(parents=True)
    (mine / "todo.txt").write_text("mine")
    code, _, err = emoflow(capsys, "analyze", a, "--out", tmp_path / "out")
    assert code == 3 and str(mine) in one_error_line(err) and "todo.txt" in one_error_line(err)
    assert (mine / "todo.txt").read_text() == "mine" and [p.name for p in mine.iterdir()] == ["todo.txt"]


# ---- 11.4 / 11.9: option values are usage errors (exit 2), before models -----------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (["--window", "nan"], "window must be between"),
        (["--window", "inf"], "window must be between"),
        (["--window", "0.01"], "window must be between"),
        (["--window", "20"], "at most 8 s"),
        (["--hop", "1e-6"], "hop must be between"),
        (["--hop", "1e-9"], "hop must be between"),
        (["--hop", "nan"], "hop must be between"),
        (["--max-duration", "-1"], "max duration"),
        (["--max-duration", "nan"], "max duration"),
        (["--format", "json,pdf"], "unknown output format.*pdf"),
        (["--format", " , "], "no output format"),
        (["--top-k", "0"], "top-k"),
        (["--embedding", "word2vec"], "needs the scheme's directory"),
        (["--embedding", "bogus"], "unknown embedding"),
    ],
)
def test_bad_option_values_exit_2_before_models(capsys, tmp_path, no_models, options, match):
    out = tmp_path / "out"
    code, _, err = emoflow(capsys, "analyze", wav(tmp_path / "a.wav"), "--out", out, *options)
    assert code == 2 and re.search(match, one_error_line(err)), err
    assert not out.exists()


def test_timeline_bounds_in_the_api():
    from emoflow.config import MAX_TIMELINE_WINDOWS, TimelineConfig

    for kw in ({"window_s": float("nan")}, {"hop_s": 1e-9}, {"hop_s": -1.0}, {"window_s": "3"}):
        with pytest.raises(ConfigError):
            TimelineConfig(**kw)  # type: ignore[arg-type]
    tl = TimelineConfig(window_s=2.0, hop_s=0.5)
    assert tl.window_count(1.0) == 1 and tl.window_count(10.0) == 17
    tl.check_duration(0.5 * MAX_TIMELINE_WINDOWS)
    with pytest.raises(ConfigError, match=r"long\.wav: .* timeline windows, more than .*--hop"):
        tl.check_duration(0.5 * MAX_TIMELINE_WINDOWS + 10, "long.wav")


def test_window_count_and_max_duration_are_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    import emoflow.audio.io as aio
    from emoflow.config import PipelineConfig, TimelineConfig
    from emoflow.pipeline import Pipeline, Work
    from tests.helpers import lying_flac

    flac = lying_flac(tmp_path / "lie.flac")  # the header claims ~50 days
    monkeypatch.setattr(aio, "_resample_blocks", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(ConfigError, match=r"lie\.flac: .* timeline windows"):
        Pipeline(PipelineConfig()).stage_decode(Work(flac))
    long = wav(tmp_path / "long.wav", 3.0, 8000)
    with pytest.raises(AudioError, match=r"long\.wav: the audio is 3\.0 s long, over the limit of 2 s"):
        Pipeline(PipelineConfig(max_duration=2.0)).stage_decode(Work(long))
    config = PipelineConfig(timeline=TimelineConfig(window_s=0.1, hop_s=0.05))
    assert Pipeline(config).check_source(long) == pytest.approx(3.0)


def test_max_duration_in_the_cli_fails_the_file_without_loading_models(capsys, tmp_path, no_models):
    a = wav(tmp_path / "a.wav", 2.0)
    code, _, err = emoflow(capsys, "analyze", a, "--out", tmp_path / "out", "--max-duration", "1.5")
    assert code == 3 and f"error: {a}: the audio is 2.0 s long, over the limit of 1.5 s" in err
    assert "0 of 1 recording(s) analysed" in err


# ---- 11.9: outputs checked before the work; input errors are exit 3 with the file named ---------


def test_out_that_is_a_file_is_refused_before_models(capsys, tmp_path, no_models):
    a = wav(tmp_path / "a.wav")
    f = tmp_path / "afile"
    f.write_text("mine")
    for out in (f, f / "sub"):
        code, _, err = emoflow(capsys, "analyze", a, "--out", out)
        assert code == 2 and "is a file" in one_error_line(err) and str(f) in err
    assert f.read_text() == "mine"
    t = tmp_path / "t.json"
    t.write_text(json.dumps({"chunks": [{"text": " Hi.", "timestamp": [0.1, 0.4]}]}))
    code, _, err = emoflow(capsys, "sentences", t, "--out", tmp_path)
    assert code == 2 and "is a folder" in one_error_line(err)
    code, _, err = emoflow(capsys, "sentences", t, "--out", f / "s.json")
    assert code == 2 and "is a file" in one_error_line(err)


def test_a_nan_wav_is_exit_3_naming_the_file(capsys, tmp_path, monkeypatch):
    from emoflow.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "load_all", lambda self, asr=True: None)  # decode fails first
    x = np.zeros(16000, np.float32)
    x[1234] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    code, _, err = emoflow(capsys, "analyze", p, "--out", out)
    assert code == 3 and f"error: {p}: audio contains NaN" in err
    assert not (out / "nan").exists()


def test_a_one_sample_recording_names_the_file(tmp_path):
    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline, Work

    p = tmp_path / "tiny.wav"
    sf.write(p, np.array([0.1], np.float32), 16000)
    with pytest.raises(AudioError, match=r"tiny\.wav: the audio is only 1 samples .* needs at least 25 ms"):
        Pipeline(PipelineConfig()).stage_decode(Work(p))


def test_a_deeply_nested_transcript_is_exit_3_before_models(capsys, tmp_path, no_models):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = emoflow(capsys, "analyze", wav(tmp_path / "a.wav"), "--transcript", deep)
    assert code == 3 and f"{deep}: the JSON is nested too deeply" in err
    code, _, err = emoflow(capsys, "sentences", deep)
    assert code == 3 and "nested too deeply" in one_error_line(err)


# ---- 11.11: stale temporaries, modes, a busy port ------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=60)
    return p.pid


def test_analyze_removes_only_its_own_stale_temporaries(capsys, tmp_path, monkeypatch):
    from emoflow.export import files
    from emoflow.pipeline import Pipeline

    def unavailable(self, asr=True):
        raise ModelUnavailableError("no models in this test")

    monkeypatch.setattr(Pipeline, "load_all", unavailable)
    out = tmp_path / "out"
    tag, dead = files._host_tag(), _dead_pid()
    stale_dir = out / f"{files.TEMP_MARK}{tag}.{dead}.k2j4h1.talk"
    stale_file = out / f"{files.TEMP_MARK}{tag}.{dead}.x8d7f6.index.jsonl.tmp"
    live = out / f"{files.TEMP_MARK}{tag}.{os.getpid()}.q1w2e3.talk"  # a run in progress
    other_host = out / f"{files.TEMP_MARK}00000000.{dead}.a1b2c3.talk"
    users = [out / ".git", out / ".talk.abc123", out / ".emoflow-notes", out / "talks"]
    for d in (stale_dir, live, other_host, *users):
        d.mkdir(parents=True)
        (d / "x").write_text("x")
    stale_file.write_text("partial")
    code, _, err = emoflow(capsys, "analyze", wav(tmp_path / "talk.wav"), "--out", out)
    assert code == 4 and "no models in this test" in err
    assert not stale_dir.exists() and not stale_file.exists()
    for kept in (live, other_host, *users):
        assert (kept / "x").read_text() == "x", kept


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_honour_the_umask(tmp_path, umask):
    from emoflow.export.files import atomic_path, write_text_atomic
    from emoflow.export.writers import save_result

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.npz", suffix=".npz") as tmp:
            tmp.write_bytes(b"x")
        d = save_result(object(), tmp_path / "result", [])  # type: ignore[arg-type]
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        plain_dir = tmp_path / "plain"
        plain_dir.mkdir()
    finally:
        os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.npz") == mode(plain) == 0o666 & ~umask
    assert mode(d) == mode(plain_dir) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.npz", "plain", "plain.txt", "result"]


def test_save_result_replaces_only_its_own_results_and_refuses_a_file(tmp_path):
    from emoflow.errors import InputError
    from emoflow.export.writers import save_result

    d = tmp_path / "r"
    d.mkdir()
    (d / "result.json").write_text("{}")  # a previous result: replaced
    (d / "report.html").write_text("old")
    assert save_result(object(), d, []) == d and list(d.iterdir()) == []  # type: ignore[arg-type]
    mine = tmp_path / "notes"  # a user's folder that shares a recording's name: never replaced
    mine.mkdir()
    (mine / "todo.txt").write_text("mine")
    (mine / "result.json").write_text("{}")
    with pytest.raises(InputError, match=r"holds files emoflow did not write \(todo.txt\)"):
        save_result(object(), mine, [])  # type: ignore[arg-type]
    assert sorted(p.name for p in mine.iterdir()) == ["result.json", "todo.txt"]
    f = tmp_path / "f"
    f.write_text("mine")
    with pytest.raises(ConfigError, match="not a folder"):
        save_result(object(), f, [])  # type: ignore[arg-type]
    assert f.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["f", "notes", "r"]


def test_serve_on_a_busy_port_fails_before_loading_models(capsys, monkeypatch):
    pytest.importorskip("uvicorn", reason="needs emoflow[serve]")
    app_module = pytest.importorskip("emoflow.service.app", reason="needs emoflow[serve]")
    monkeypatch.setattr(app_module, "create_app", lambda *a, **k: pytest.fail("built the app"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = emoflow(capsys, "serve", "--port", str(port))
    line = one_error_line(err)
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
    code, _, err = emoflow(capsys, "serve", "--port", "70000")
    assert code == 2 and "not a TCP port" in one_error_line(err)


# ---- 11.10: the report's embedded JSON ----------------------------------------------------------


def test_report_json_cannot_end_or_open_a_script():
    from emoflow.viz.report import _script_json

    data = {"text": "<!--<script>alert(1)</script> a & b > c", "n": [1, 2]}
    text = _script_json(data)
    assert not set(text) & set("<>&") and json.loads(text) == data


# ---- 12.4: the analysis options are declared once, against emoflow.config ----------------------


@pytest.mark.parametrize("command", ["analyze", "batch", "serve", "features", "transcribe", "sentences"])
def test_option_defaults_are_the_configurations(command):
    import typer

    from emoflow.cli.options import OPTIONS, pipeline_config
    from emoflow.config import PipelineConfig

    params = typer.main.get_command(cli.app).commands[command].params  # type: ignore[attr-defined]
    shared = {p.name: p.default for p in params if p.name in OPTIONS and OPTIONS[p.name].field}
    assert shared
    # what typer hands over when no option is given builds the default configuration
    parsed = {name: OPTIONS[name].default_value() for name in shared}
    assert {name: getattr(v, "value", v) for name, v in parsed.items()} == shared
    config, default = pipeline_config(parsed), PipelineConfig()
    if command == "sentences":  # the flag's off is "no pause adjustment"; the setting's None is "auto"
        default = replace(default, asr=replace(default.asr, pause_adjust=False))
    assert config == default


def test_help_shows_the_configured_defaults_and_loads_no_torch():
    from emoflow import config

    code = (
        "import sys; from emoflow.cli import run; "
        "codes = [run([*c, '--help']) for c in ([], ['analyze'], ['serve'], ['train'])]; "
        "print(codes, 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("[0, 0, 0, 0] False"), r.stderr
    text = " ".join(re.sub(r"-\n\s*", "-", r.stdout).split())  # help wraps long ids at hyphens
    for value in (config.DEFAULT_ASR_MODEL, config.DEFAULT_AUDIO_MODEL, config.DEFAULT_ENCODER):
        assert f"[default: {value}]" in text
    assert f"[default: {config.SERVICE_PORT}]" in text and f"[default: {config.TrainConfig.epochs}]" in text
