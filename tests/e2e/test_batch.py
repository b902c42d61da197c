"""Corpus batches: bad files, a kill and a resume, and the Ray engine against the local one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from emoflow.batch.index import is_complete
from tests.helpers import need_shared, run_cli

pytestmark = pytest.mark.slow
FORMATS = "json,csv,srt"


@pytest.fixture(scope="module")
def models(replica_args):
    return [*replica_args, "--format", FORMATS]


def corpus(tmp_path, n_good: int, n_bad: int = 0):
    src = need_shared("audio", "speech", "three_moods.wav")
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(n_good):
        shutil.copy(src, d / f"rec{i:02d}.wav")
    for i in range(n_bad):
        (d / f"broken{i}.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + os.urandom(64))
    return d


def index_lines(out):
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def test_bad_files_are_reported_and_the_rest_finish(tmp_path, models):
    d = corpus(tmp_path, 3, 2)
    out = tmp_path / "out"
    r = run_cli("batch", str(d), "--out", str(out), *models)
    assert r.returncode == 3
    assert "3 analysed, 0 already complete, 2 failed of 5" in r.stderr
    assert r.stderr.count("broken") >= 2
    recs = {x["name"]: x for x in index_lines(out)}
    assert {k: v["status"] for k, v in recs.items()} == {
        "broken0": "failed",
        "broken1": "failed",
        "rec00": "ok",
        "rec01": "ok",
        "rec02": "ok",
    }
    assert all(is_complete(out / f"rec{i:02d}", FORMATS.split(",")) for i in range(3))
    sentences = pd.read_parquet(out / "sentences.parquet")
    assert sorted(sentences["recording"].unique()) == ["rec00", "rec01", "rec02"] and len(sentences) == 9
    assert len(pd.read_parquet(out / "timeline.parquet")) == 27
    # a rerun skips what is complete and retries the failures: no duplicate lines afterwards
    r = run_cli("batch", str(d), "--out", str(out), *models)
    assert "0 analysed, 3 already complete, 2 failed" in r.stderr
    assert len(index_lines(out)) == 5


def test_killed_batch_resumes_without_loss_or_duplicates(tmp_path, models):
    d = corpus(tmp_path, 6)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "emoflow", "batch", str(d), "--out", str(out), *models]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once two recordings are done, mid-way through the third
        if (out / "index.jsonl").exists() and len((out / "index.jsonl").read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the batch ended before it could be killed")
        time.sleep(0.1)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(index_lines(out))
    assert 2 <= done_before < 6
    r = run_cli("batch", str(d), "--out", str(out), *models)
    assert r.returncode == 0, r.stderr
    names = [x["name"] for x in index_lines(out)]
    assert sorted(names) == [f"rec{i:02d}" for i in range(6)]  # every file once: no duplicates
    assert all(is_complete(out / n, FORMATS.split(",")) for n in names)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial folders left


def test_ray_engine_matches_the_local_engine(tmp_path, models):
    pytest.importorskip("ray", reason="needs emoflow[ray]")
    src = need_shared("audio", "speech")
    d = tmp_path / "three"
    d.mkdir()
    for name in ("three_moods.wav", "stereo_44k.wav", "interview.wav"):
        shutil.copy(src / name, d / name)
    r1 = run_cli("batch", str(d), "--out", str(tmp_path / "local"), *models)
    r2 = run_cli("batch", str(d), "--out", str(tmp_path / "ray"), "--engine", "ray", *models, timeout=600)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-2000:]
    assert "3 analysed, 0 already complete, 0 failed of 3" in r2.stderr
    assert not [p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")]  # no lock, no temps
    for name in ("three_moods", "stereo_44k", "interview"):
        a = json.loads((tmp_path / "local" / name / "result.json").read_text())
        b = json.loads((tmp_path / "ray" / name / "result.json").read_text())

        def key(res):
            return [
                (
                    s["text"],
                    s["start"],
                    s["end"],
                    s["sequence"],
                    s["text_emotion"]["labels"][0],
                    s["audio_emotion"]["labels"][0],
                )
                for s in res["sentences"]
            ]

        assert key(a) == key(b)
        for sa, sb in zip(a["sentences"], b["sentences"]):
            assert sa["audio_emotion"]["scores"] == pytest.approx(sb["audio_emotion"]["scores"], abs=1e-4)
