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
from tests.helpers import need_shared, run_cli, run_cli_in_process

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


def conversations(tmp_path, names=("conv1", "conv3")):
    src = need_shared("data", "conversations")
    d = tmp_path / "conversations"
    d.mkdir()
    for name in names:
        shutil.copy(src / f"{name}.wav", d / f"{name}.wav")
    return d


def test_a_diarised_batch_carries_speakers_into_the_corpus_tables(tmp_path, replica_args):
    d = conversations(tmp_path)
    out = tmp_path / "out"
    args = ("batch", str(d), "--out", str(out), *replica_args, "--format", "json,csv", "--diarize")
    r = run_cli_in_process(*args)  # one torch thread: a fresh process takes every core (slow when busy)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = {x["name"]: x for x in index_lines(out)}
    for name in ("conv1", "conv3"):
        assert {"diarization.rttm", "speakers.csv"} <= {p.name for p in (out / name).iterdir()}
        assert recs[name]["speakers"] >= 2
    sentences = pd.read_parquet(out / "sentences.parquet")
    assert list(sentences.columns[:5]) == ["recording", "index", "start", "end", "speaker"]
    assert sentences["speaker"].notna().all() and sentences["speaker"].str.startswith("SPEAKER_").all()
    speakers = pd.read_parquet(out / "speakers.parquet")
    assert list(speakers.columns[:3]) == ["recording", "speaker", "talk_time_s"]
    for name, group in speakers.groupby("recording"):
        assert len(group) == recs[name]["speakers"]
        assert group["share"].sum() == pytest.approx(1.0, abs=1e-3)
        said = sentences[sentences["recording"] == name]
        assert set(said["speaker"]) <= set(group["speaker"])
        assert list(group["num_sentences"]) == [int((said["speaker"] == s).sum()) for s in group["speaker"]]
    # resumed: complete (the speakers' files are there), nothing is redone
    r = run_cli_in_process(*args)
    assert r.returncode == 0 and "0 analysed, 2 already complete, 0 failed of 2" in r.stderr, r.stderr[-2000:]
    assert sorted(pd.read_parquet(out / "speakers.parquet")["recording"].unique()) == ["conv1", "conv3"]


def test_a_run_that_diarises_redoes_folders_analysed_without(tmp_path):
    from emoflow.batch.index import append_record, record_for
    from emoflow.batch.planning import BatchItem, plan

    items = [BatchItem(tmp_path / f"{n}.wav", n) for n in ("plain", "diarised")]
    out = tmp_path / "out"
    for item in items:
        (out / item.name).mkdir(parents=True)
        for f in ("result.json", "sentences.csv", "timeline.csv"):
            (out / item.name / f).write_text("{}")
        append_record(out / "index.jsonl", record_for(item, "ok", 1.0))
    for f in ("diarization.rttm", "speakers.csv"):
        (out / "diarised" / f).write_text("")
    todo, skipped = plan(items, out, ["json", "csv"], resume=True, diarized=True)
    assert [i.name for i in todo] == ["plain"] and [i.name for i, _ in skipped] == ["diarised"]
    todo, _ = plan(items, out, ["json", "csv"], resume=True)
    assert todo == []  # a run without diarisation takes either as complete


def test_the_ray_transcribe_actor_diarises(tmp_path, replica_config):
    """The Ray engine's diarisation: it runs in stage_transcribe, so the transcription actor builds
    the diarizer when it starts (with its other models, on its own thread share) and its rows carry
    the speakers on to the other stages (no cluster needed to run the actors' code)."""
    import pickle
    from dataclasses import replace

    import torch

    from emoflow.batch.ray import DecodeStage, TranscribeStage
    from emoflow.pipeline import Work

    audio = need_shared("data", "conversations", "conv2.wav")
    threads = torch.get_num_threads()
    try:
        config = replace(replica_config, diarize=True)
        stage = TranscribeStage(config, threads=1)
        assert stage.load_error == "" and stage.pipeline._diarizer is not None  # built at start
        assert torch.get_num_threads() == 1
        row = {"payload": [pickle.dumps(Work(str(audio)))], "name": ["conv2"], "error": [""], "fatal": [""]}
        row = stage(DecodeStage(config)(row))
        assert list(row["error"]) == [""]
        work = pickle.loads(row["payload"][0])
        assert work.diarization is not None and work.diarization.num_speakers >= 2
        assert work.sentences and all(s.speaker in work.diarization.speakers for s in work.sentences)
        assert not TranscribeStage(replica_config, threads=1).pipeline._diarizer  # only when asked
    finally:
        torch.set_num_threads(threads)
