"""The web service under unlucky and hostile input (issues 10 and 11): restarts, a blocked
event loop, chunked uploads, duration limits, cancellation, queue slots, Host and bearer
checks, bad settings and bad files, server paths, the thread policy."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="needs emoflow[serve]")
from fastapi.testclient import TestClient

from emoflow.errors import ConfigError
from emoflow.pipeline import Pipeline
from emoflow.service import uploads
from emoflow.service.app import ServiceSettings, create_app

pytestmark = pytest.mark.slow

# word-level transcript for the 1.5 s test tone: the analyses skip ASR and stay quick
TRANSCRIPT = json.dumps(
    {"chunks": [{"text": " hello", "timestamp": [0.2, 0.5]}, {"text": " there.", "timestamp": [0.6, 0.9]}]}
).encode()


@pytest.fixture(scope="module")
def pipeline(replica_config):
    return Pipeline(replica_config)


def client(pipeline, tmp_path: Path, **kw) -> TestClient:
    return TestClient(
        create_app(pipeline, ServiceSettings(store=tmp_path / "store", **kw)), base_url="http://localhost"
    )


def wav_bytes(
    seconds: float = 1.5, rate: int = 16000, subtype: str | None = None, nan_at: int | None = None
) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    if nan_at is not None:
        x[nan_at] = np.nan
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def post(
    c: TestClient, audio: bytes, transcript: bytes | None = TRANSCRIPT, settings: str | None = None, **kw
):
    files = {"audio": ("a.wav", audio, "audio/wav")}
    if transcript is not None:
        files["transcript"] = ("t.json", transcript, "application/json")  # type: ignore[assignment]
    return c.post("/v1/analyses", files=files, data={"settings": settings} if settings else None, **kw)


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_done(c: TestClient, job_id: str, timeout: float = 120) -> dict:
    def finished():
        body = c.get(f"/v1/analyses/{job_id}").json()
        return body if body.get("status") in ("done", "failed") else None

    return wait_for(finished, timeout, f"analysis {job_id}")


def store_dirs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "store").iterdir())


# ---- 10.6 + 11.7: restarts -------------------------------------------------------------------
def fake_job(store: Path, status: str, finished: float | None, with_result: bool, record: bool = True) -> str:
    job_id = f"{status[:4]}{len(list(store.iterdir())):02d}".ljust(32, "x")
    d = store / job_id
    (d / "result").mkdir(parents=True)
    (d / "input").write_bytes(b"upload")
    if with_result:
        (d / "result" / "result.json").write_text("{}")
    if record:
        created = (finished or time.time()) - 5
        rec = {"id": job_id, "status": status, "created": created, "started": created, "finished": finished}
        (d / "job.json").write_text(json.dumps({**rec, "error": None, "settings": {}}))
    return job_id


def test_a_restart_restores_the_job_table_and_applies_retention(pipeline, tmp_path):
    with client(pipeline, tmp_path, retention_s=3600) as c:
        r = post(c, wav_bytes())
        assert r.status_code == 202, r.text
        kept = r.json()["id"]
        assert wait_done(c, kept)["status"] == "done"
    store = tmp_path / "store"
    long_ago = time.time() - 3 * 3600
    expired = fake_job(store, "done", long_ago, with_result=True)
    legacy_expired = fake_job(store, "done", None, with_result=True, record=False)  # before job.json
    for p in (store / legacy_expired / "result" / "result.json", store / legacy_expired):
        os.utime(p, (long_ago, long_ago))
    running = fake_job(store, "running", None, with_result=False)
    queued_legacy = fake_job(store, "queued", None, with_result=False, record=False)
    (store / "notes.txt").write_text("mine")  # not ours: never touched
    (store / ".git").mkdir()

    with client(pipeline, tmp_path, retention_s=3600) as c:
        # finished before the restart: served again
        body = c.get(f"/v1/analyses/{kept}").json()
        assert body["status"] == "done" and body["result"]["source"]["duration_s"] == 1.5
        assert c.get(f"/v1/analyses/{kept}/files/sentences.csv").status_code == 200
        # retention counts for results stored before the restart: deleted at start-up
        for old in (expired, legacy_expired):
            assert c.get(f"/v1/analyses/{old}").status_code == 404
            assert not (store / old).exists()
        # interrupted by the restart: failed with a reason, uploads removed now, folder kept for retention
        for job_id in (running, queued_legacy):
            body = c.get(f"/v1/analyses/{job_id}").json()
            assert body["status"] == "failed" and "interrupted" in body["error"], body
            assert not (store / job_id / "input").exists()
        assert (store / "notes.txt").read_text() == "mine" and (store / ".git").is_dir()
        assert c.delete(f"/v1/analyses/{running}").status_code == 204
        assert not (store / running).exists()
    # a third start finds the interrupted job's record, now failed, and nothing lost
    with client(pipeline, tmp_path, retention_s=3600) as c:
        assert c.get(f"/v1/analyses/{kept}").json()["status"] == "done"
        assert c.get(f"/v1/analyses/{queued_legacy}").json()["status"] == "failed"
        assert c.get(f"/v1/analyses/{running}").status_code == 404


# ---- 10.7: the upload is checked off the event loop -------------------------------------------
def test_health_answers_while_an_upload_is_being_checked(pipeline, tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_check = uploads.check_audio

    def slow_check(*args, **kw):
        entered.set()
        release.wait(20)  # bounded: a blocked loop makes /healthz wait this long
        return real_check(*args, **kw)

    monkeypatch.setattr(uploads, "check_audio", slow_check)
    with client(pipeline, tmp_path, workers=0) as c:
        result: dict = {}
        t = threading.Thread(target=lambda: result.update(r=post(c, wav_bytes(), transcript=None)))
        t.start()
        try:
            assert entered.wait(30), "the upload was never checked"
            t0 = time.perf_counter()
            health = c.get("/healthz")
            elapsed = time.perf_counter() - t0
        finally:
            release.set()
            t.join(30)
        assert health.status_code == 200 and elapsed < 5, f"/healthz took {elapsed:.1f} s"
        assert result["r"].status_code == 202


# ---- 11.6: chunked uploads stop at the limit --------------------------------------------------
def test_a_chunked_upload_is_refused_while_it_streams(pipeline, tmp_path):
    import anyio

    boundary = "emoflow-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    chunk, n_chunks = 64 * 1024, 80  # 5 MB against a 0.05 MB limit

    async def drive(app) -> tuple[int, list[dict]]:
        parts = iter([head, *([b"\0" * chunk] * n_chunks), f"\r\n--{boundary}--\r\n".encode()])
        pulled, sent = 0, []

        async def receive() -> dict:
            nonlocal pulled
            body = next(parts, None)
            if body is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            pulled += len(body)
            return {"type": "http.request", "body": body, "more_body": True}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/analyses",
            "raw_path": b"/v1/analyses",
            "query_string": b"",
            "root_path": "",
            # no Content-Length: the body arrives in chunks
            "headers": [
                (b"host", b"localhost"),
                (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                (b"transfer-encoding", b"chunked"),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        return pulled, sent

    with client(pipeline, tmp_path, max_upload_mb=0.05, workers=0) as c:
        pulled, sent = anyio.run(drive, c.app)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert start["status"] == 413 and b"0.05 MB" in body, body
        assert pulled < 1_000_000, f"{pulled} bytes read before the 413"
        assert store_dirs(tmp_path) == []


# ---- 11.3: decoded duration, cancelling a running analysis ------------------------------------
def test_the_duration_limit_is_checked_before_queueing_and_while_decoding(pipeline, tmp_path, monkeypatch):
    with client(pipeline, tmp_path, max_duration_s=1.2) as c:
        long = post(c, wav_bytes(2.5))
        assert long.status_code == 413 and "0:00:02 long" in long.json()["detail"], long.text
        assert store_dirs(tmp_path) == []
        short = post(c, wav_bytes(1.0))
        assert short.status_code == 202 and wait_done(c, short.json()["id"])["status"] == "done"
        # a header that tells nothing: the decoder enforces the same limit in the analysis
        import emoflow.audio.io as audio_io
        import emoflow.pipeline as pipeline_module

        monkeypatch.setattr(audio_io, "probe_duration", lambda source: None)
        monkeypatch.setattr(pipeline_module, "probe_duration", lambda source: None)
        unknown = post(c, wav_bytes(2.5))
        assert unknown.status_code == 202
        body = wait_done(c, unknown.json()["id"])
        assert body["status"] == "failed" and "limit of 1.2 s" in body["error"], body
        assert str(tmp_path) not in body["error"]


class GateVad:
    """The real VAD behind a gate: holds an analysis in its running state until released."""

    def __init__(self, inner) -> None:
        self.inner, self.entered, self.gate = inner, threading.Event(), threading.Event()

    def __call__(self, *args, **kw):
        self.entered.set()
        self.gate.wait(60)
        return self.inner(*args, **kw)


def test_a_running_analysis_can_be_cancelled_and_frees_the_worker(pipeline, replica_config, tmp_path):
    gate = GateVad(pipeline.vad)
    gated = Pipeline(replica_config, vad=gate)
    try:
        with client(gated, tmp_path, workers=1, queue_size=1) as c:
            first = post(c, wav_bytes()).json()["id"]
            assert gate.entered.wait(60), "the analysis never started"
            assert c.get(f"/v1/analyses/{first}").json()["status"] == "running"
            assert c.delete(f"/v1/analyses/{first}").status_code == 204
            assert c.get(f"/v1/analyses/{first}").status_code == 404
            second = post(c, wav_bytes())
            assert second.status_code == 202
            gate.gate.set()
            wait_for(
                lambda: not (tmp_path / "store" / first).exists(), 60, "the cancelled job's folder to go"
            )
            assert wait_done(c, second.json()["id"])["status"] == "done"
            assert store_dirs(tmp_path) == [second.json()["id"]]
    finally:
        gate.gate.set()


# ---- 11.11: queue slots, bearer scheme, server paths -------------------------------------------
def test_deleting_a_queued_analysis_frees_its_queue_slot(pipeline, tmp_path):
    with client(pipeline, tmp_path, workers=0, queue_size=1) as c:  # nobody consumes
        first = post(c, wav_bytes())
        assert first.status_code == 202
        assert post(c, wav_bytes()).status_code == 503
        assert c.delete(f"/v1/analyses/{first.json()['id']}").status_code == 204
        again = post(c, wav_bytes())
        assert again.status_code == 202, again.text
        assert c.get("/healthz").json()["queued"] == 1
        assert store_dirs(tmp_path) == [again.json()["id"]]


def test_the_bearer_scheme_is_matched_in_any_case(pipeline, tmp_path):
    with client(pipeline, tmp_path, token="s3cret", workers=0) as c:
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert c.get("/openapi.json", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
        for header in (
            "Bearer wrong",
            "Basic s3cret",
            "s3cret",
            "Bearer s3cr\u00e9t".encode(),
        ):
            assert c.get("/openapi.json", headers={"Authorization": header}).status_code == 401, header


def test_results_carry_no_server_paths(pipeline, replica_config, tmp_path):
    with client(pipeline, tmp_path) as c:
        job_id = post(c, wav_bytes()).json()["id"]
        body = wait_done(c, job_id)
        assert body["status"] == "done", body
        assert body["result"]["source"]["path"] is None
        stored = (tmp_path / "store" / job_id / "result" / "result.json").read_text()
        report = c.get(f"/v1/analyses/{job_id}/report").text
        for text in (json.dumps(body), stored, report):
            assert str(tmp_path) not in text
            for model in (
                replica_config.audio_model,
                replica_config.text_model,
                replica_config.encoder_model,
            ):
                assert str(model) not in text
        assert body["result"]["models"]["audio_emotion"]["id"] == Path(replica_config.audio_model).name


# ---- 11.8: Host header ----------------------------------------------------------------------
def test_only_the_bound_host_names_are_answered(pipeline, tmp_path):
    with client(pipeline, tmp_path, workers=0, host="10.1.2.3") as c:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "10.1.2.3:8000", "LOCALHOST"):
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
            assert c.get("/v1/analyses/" + "x" * 32, headers={"host": host}).status_code == 400, host
            assert c.get("/", headers={"host": host}).status_code == 400, host
    with client(pipeline, tmp_path, workers=0, allowed_hosts=("emo.example",)) as c:
        assert c.get("/healthz", headers={"host": "emo.example"}).status_code == 200
        assert c.get("/healthz", headers={"host": "localhost"}).status_code == 400
    assert "*" in ServiceSettings(store=tmp_path, allowed_hosts=("*",)).trusted_hosts()
    assert "localhost" in ServiceSettings(store=tmp_path, host="0.0.0.0").trusted_hosts()


# ---- 11.4 + 11.9: every input problem is a 4xx with a message ---------------------------------
@pytest.mark.parametrize(
    "settings, says",
    [
        ('{"top_k": 1e400}', "top_k"),
        ('{"top_k": 2.5}', "top_k"),
        ('{"top_k": true}', "top_k"),
        ('{"window": NaN}', "NaN"),
        ('{"hop": Infinity}', "NaN"),
        ('{"window": "3"}', "window"),
        ('{"hop": 1e-9}', "hop"),
        ('{"window": 1e308}', "window"),
        ('{"timeline": ["exact"]}', "timeline"),
        ("[" * 100_000 + "]" * 100_000, "settings"),
    ],
)
def test_bad_settings_are_422(pipeline, tmp_path, settings, says):
    with client(pipeline, tmp_path, workers=0) as c:
        r = post(c, wav_bytes(), settings=settings)
        assert r.status_code == 422 and says in r.json()["detail"], r.text
        assert store_dirs(tmp_path) == []


def silent_flac(seconds: int, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC") as f:
        for _ in range(seconds // 60):
            f.write(np.zeros(rate * 60, np.int16))
    return buf.getvalue()


def test_bad_files_are_4xx_before_queueing(pipeline, tmp_path):
    with client(pipeline, tmp_path, workers=0) as c:
        nested = post(c, wav_bytes(), transcript=b"[" * 100_000 + b"]" * 100_000)
        assert nested.status_code == 422 and "nested" in nested.json()["detail"]
        assert post(c, wav_bytes(), transcript=b"NaN").status_code == 422
        for t in (1e400, 3e307):  # overflowing / absurd word times: 422 now, not a failed job later
            body = b'{"chunks": [{"text": " hi", "timestamp": [0.0, %s]}]}' % str(t).encode()
            r = post(c, wav_bytes(), transcript=body)
            assert r.status_code == 422 and "transcript" in r.json()["detail"], r.text
        nan = post(c, wav_bytes(subtype="FLOAT", nan_at=20_000), transcript=None)
        assert nan.status_code == 422 and "NaN" in nan.json()["detail"]
        # 44 min of audio at the smallest hop: more timeline windows than allowed, said at upload
        windows = post(c, silent_flac(44 * 60), transcript=None, settings='{"hop": 0.05}')
        assert windows.status_code == 422 and "hop" in windows.json()["detail"], windows.text
        assert store_dirs(tmp_path) == []
        # the same recording at the default hop is fine
        assert post(c, silent_flac(44 * 60), transcript=None).status_code == 202


def test_service_settings_are_validated(tmp_path):
    for bad in ({"queue_size": 0}, {"workers": -1}, {"max_upload_mb": float("nan")}, {"retention_s": 0}):
        with pytest.raises(ConfigError):
            ServiceSettings(store=tmp_path, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ServiceSettings(store=tmp_path, max_duration_s=-1.0)
    with pytest.raises(ConfigError):
        ServiceSettings(store=tmp_path, allowed_hosts=("a*b",))


# ---- 10.3: the entry point owns the thread policy --------------------------------------------
def test_the_service_sets_the_thread_policy_at_start(pipeline, tmp_path, monkeypatch):
    import emoflow.models

    calls: list[tuple] = []
    monkeypatch.setattr(emoflow.models, "set_cpu_threads", lambda *a, **kw: calls.append(a))
    with client(pipeline, tmp_path, workers=0) as c:
        assert c.get("/healthz").status_code == 200
    assert len(calls) == 1
