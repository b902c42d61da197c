"""Batch runner regressions (issues 10.1, 11.1, 11.2, 11.11): a fake pipeline, no models."""

from __future__ import annotations

import json
import logging
import selectors
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emoflow.batch.index import read_index
from emoflow.batch.local import run_batch
from emoflow.batch.lock import LOCK, output_lock
from emoflow.batch.planning import discover
from emoflow.errors import ConfigError, InputError
from emoflow.export.writers import save_result

FORMATS = ["json"]


class FakePipeline:
    """Analyses nothing: each result names its input, so a wrong folder shows at once."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def analyze(self, path: Path) -> SimpleNamespace:
        from emoflow.pipeline import file_sha256

        self.calls.append(Path(path))
        sha = file_sha256(path)
        text = json.dumps({"source": {"path": str(path), "sha256": sha}})
        result = SimpleNamespace(
            to_json=lambda: text,
            timings={"decode": 0.01},
            sentences=[],
            source=SimpleNamespace(duration_s=1.5, sha256=sha, path=str(path)),
            diarization=None,  # not diarised (the writers look for the speakers' files)
        )
        result.save = lambda directory, formats: save_result(result, directory, formats)  # as Result.save
        return result


def audio(path: Path, content: bytes = b"fake audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def source_of(folder: Path) -> str:
    return json.loads((folder / "result.json").read_text())["source"]["path"]


def test_user_dot_folders_survive_and_a_dot_named_input_is_done_once(tmp_path):
    # issue 11.1: every hidden folder in --out was removed, and `.h.wav`'s output with them
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / ".h.wav")
    audio(corpus / "talk.wav")
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".notes").mkdir()
    (out / ".old.abc123").mkdir()  # named like the old temporaries: still not ours to remove
    # a temporary that a killed emoflow left: made by a process that is gone
    script = textwrap.dedent(
        f"""
        import os
        from emoflow.export.files import atomic_dir
        with atomic_dir({str(out / "talk")!r}) as tmp:
            (tmp / "half").write_text("x")
            os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    stale = [p for p in out.iterdir() if p.name.startswith(".emoflow-tmp.")]
    assert len(stale) == 1
    pipe = FakePipeline()
    s = run_batch(discover(corpus), out, pipe, formats=FORMATS)
    assert (s.done, s.skipped) == (2, 0)
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (out / ".notes").is_dir() and (out / ".old.abc123").is_dir()
    assert not stale[0].exists()
    assert source_of(out / ".h") == str(corpus / ".h.wav")
    s = run_batch(discover(corpus), out, pipe, formats=FORMATS)
    assert (s.done, s.skipped) == (0, 2)  # `.h` was not removed and redone
    assert len(pipe.calls) == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        ".git",
        ".h",
        ".notes",
        ".old.abc123",
    ]


def test_every_input_is_analysed_into_its_own_folder(tmp_path):
    # issue 11.2: a.wav + a.flac (and x/y.wav + x__y.wav) shared a folder; the second was "recovered, 0 s"
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    files = [audio(corpus / r, r.encode()) for r in ("a.wav", "a.flac", "x/y.wav", "x__y.wav", "y.wav")]
    pipe = FakePipeline()
    items = discover(corpus)
    s = run_batch(items, out, pipe, formats=FORMATS)
    assert (s.done, s.skipped, s.failed) == (5, 0, [])
    assert sorted(pipe.calls) == sorted(files)
    assert {source_of(out / i.name) for i in items} == {str(f) for f in files}
    recs = read_index(out)
    assert len(recs) == 5 and not any(r.get("recovered") for r in recs.values())
    s = run_batch(discover(corpus), out, pipe, formats=FORMATS)  # resumed: the same folders, all done
    assert (s.done, s.skipped) == (0, 5) and len(pipe.calls) == 5


def test_a_folder_holding_another_recordings_analysis_refuses_the_run(tmp_path):
    out = tmp_path / "out"
    first = audio(tmp_path / "one" / "talk.wav", b"first recording")
    pipe = FakePipeline()
    run_batch(discover(first.parent), out, pipe, formats=FORMATS)
    other = audio(tmp_path / "two" / "talk.wav", b"another recording")
    with pytest.raises(InputError, match=r"talk holds the analysis of .*one.*talk\.wav, not of .*two"):
        run_batch(discover(other.parent), out, pipe, formats=FORMATS)
    assert len(pipe.calls) == 1 and source_of(out / "talk") == str(first)
    moved = audio(tmp_path / "moved" / "talk.wav", b"first recording")  # the same file, moved: done
    s = run_batch(discover(moved.parent), out, pipe, formats=FORMATS)
    assert (s.done, s.skipped) == (0, 1)


HOLD = textwrap.dedent(
    """
    import sys
    from emoflow.batch.lock import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The next line of ``proc``'s stdout; fails the test (instead of hanging) after ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            pytest.fail(f"no line from the helper process within {timeout_s:g} s")
    return proc.stdout.readline().strip()


def test_a_second_batch_into_the_same_folder_is_refused_at_once(tmp_path):
    # issue 11.11: two batches on one --out duplicated work and could replace an index record with a stub
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "talk.wav")
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert read_line(holder, timeout_s=120) == "locked"
        pipe = FakePipeline()
        t0 = time.monotonic()
        with pytest.raises(InputError, match=rf"{out}: another emoflow batch \(pid {holder.pid}\)"):
            run_batch(discover(corpus), out, pipe, formats=FORMATS)
        # refused, not queued behind the holder (which waits for us); generous for a loaded CI
        assert time.monotonic() - t0 < 60 and pipe.calls == []
        assert not (out / "index.jsonl").exists()
    finally:
        try:
            holder.communicate("\n", timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.communicate()
            raise
    assert holder.returncode == 0
    assert not (out / LOCK).exists()  # released and removed
    s = run_batch(discover(corpus), out, FakePipeline(), formats=FORMATS)
    assert s.done == 1 and not (out / LOCK).exists()


def test_the_lock_outlives_no_killed_run_and_is_not_shared_between_threads(tmp_path):
    (tmp_path / LOCK).write_text("99999999\n")  # left by a killed run: not locked any more
    with output_lock(tmp_path):
        with output_lock(tmp_path):  # re-entrant in one thread (CLI, then the runner)
            pass
        errors: list[Exception] = []

        def other() -> None:
            try:
                with output_lock(tmp_path):
                    pass
            except InputError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=30)
        assert len(errors) == 1 and str(tmp_path) in str(errors[0])
    assert not (tmp_path / LOCK).exists()


def test_an_output_path_that_is_a_file_is_refused_before_any_work(tmp_path):
    audio(tmp_path / "c" / "talk.wav")
    (tmp_path / "out").write_text("mine")
    pipe = FakePipeline()
    with pytest.raises(InputError, match="exists and is not a folder"):
        run_batch(discover(tmp_path / "c"), tmp_path / "out", pipe, formats=FORMATS)
    assert pipe.calls == [] and (tmp_path / "out").read_text() == "mine"


# ---- Ray engine: resources that fit the cluster, bounded start-up (issue 10.1) -----------------


def placed(share, nodes, concurrency, model_stages=3, stages=5):
    from emoflow.batch.ray_cluster import _fits

    gpu = [(share.cpus, share.gpus)] * (model_stages * concurrency if share.gpus else 0)
    return _fits(nodes, gpu + [(share.cpus, 0.0)] * (stages * concurrency - len(gpu)))


@pytest.mark.parametrize(
    ("nodes", "concurrency"),
    [
        ([{"CPU": 2.0}], 1),  # the CI machine: five pools of one CPU each could never all start
        ([{"CPU": 2.0}], 3),
        ([{"CPU": 2.0}, {"CPU": 2.0}], 1),  # 5 x 0.76 CPU fits in total but not node by node
        ([{"CPU": 16.0}], 2),
        ([{"CPU": 0.0}, {"CPU": 6.0, "GPU": 1.0}, {"CPU": 3.0}], 4),
    ],
)
def test_stage_actors_always_fit_the_cluster(nodes, concurrency):
    from emoflow.batch.ray_cluster import plan_resources

    share = plan_resources(nodes, concurrency)
    assert 0 < share.cpus <= 1.0 and share.threads >= 1
    assert placed(share, nodes, concurrency)
    assert 5 * concurrency * share.cpus <= sum(n.get("CPU", 0) for n in nodes)
    if any(n.get("GPU") for n in nodes):
        assert share.gpus > 0 and 3 * concurrency * share.gpus <= 1.0
    else:
        assert share.gpus == 0
    if sum(n.get("CPU", 0) for n in nodes) >= 5 * concurrency / 0.95 and len(nodes) == 1:
        assert share.cpus == 1.0


def test_a_cluster_too_small_for_the_actors_is_a_config_error():
    from emoflow.batch.ray_cluster import plan_resources

    with pytest.raises(ConfigError, match="cannot hold 500 stage actors .*lower --concurrency"):
        plan_resources([{"CPU": 2.0}], 100)
    with pytest.raises(ConfigError, match="at least 1"):
        plan_resources([{"CPU": 2.0}], 0)


def test_ray_start_up_is_bounded(monkeypatch):
    ray = pytest.importorskip("ray", reason="needs emoflow[ray]")
    from emoflow.batch.ray_cluster import start_ray

    release = threading.Event()
    monkeypatch.setattr(ray, "init", lambda **kw: release.wait(60))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    t0 = time.monotonic()
    try:
        with pytest.raises(ConfigError, match="could not start a local Ray instance within 0.5 s"):
            start_ray(None, timeout_s=0.5)
        assert time.monotonic() - t0 < 45  # the start gave up, not waited for ray.init (60 s)
    finally:
        release.set()


# ---- corpus tables: this run's inputs only (every `ok` line of the index counted renamed inputs twice)


class CsvPipeline(FakePipeline):
    """A real (tiny) result, so that every format can be written: one sentence naming the input."""

    def analyze(self, path: Path):  # -> Result
        import numpy as np

        from emoflow.provenance import Provenance
        from emoflow.results import Result, SentenceResult, SourceInfo
        from emoflow.types import AudioEmotion, EmotionScores, Sentence, Timeline, TimeSpan, Transcript

        fake = super().analyze(path)
        scores = EmotionScores(("joy", "sad"), (0.5, 0.5))
        sentence = Sentence(0, Path(path).name, TimeSpan(0.0, 1.0))
        return Result(
            source=SourceInfo(str(path), fake.source.sha256, 1.5, 16000, 1),
            models={
                m: Provenance(m, None) for m in ("asr", "audio_emotion", "text_emotion", "sequence_encoder")
            },
            settings={},
            transcript=Transcript((), "en"),
            sentences=[SentenceResult(sentence, scores, "joy", scores)],
            utterance=AudioEmotion(scores, np.zeros(4, np.float32)),
            timeline=Timeline(
                "pooled",
                1.0,
                1.0,
                scores.labels,
                (TimeSpan(0.0, 1.0),),
                np.full((1, 2), 0.5, np.float32),
                np.zeros((1, 4), np.float32),
            ),
            audio_sentences=np.zeros((1, 4), np.float32),
            text_sentences=np.zeros((1, 3), np.float32),
            timings=fake.timings,
        )


CSV = ["json", "csv"]


def table_recordings(out: Path) -> dict[str, list[str]]:
    import pandas as pd

    return {t: sorted(pd.read_parquet(out / f"{t}.parquet")["recording"]) for t in ("sentences", "timeline")}


def test_corpus_tables_count_a_renamed_input_once(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "s1" / "talk.wav", b"first")
    s = run_batch(discover(corpus), out, CsvPipeline(), formats=CSV)
    assert s.done == 1 and table_recordings(out)["sentences"] == ["talk"]
    audio(corpus / "s2" / "talk.wav", b"second")  # clashes: s1/talk.wav is now s1__talk
    items = discover(corpus)
    assert [i.name for i in items] == ["s1__talk", "s2__talk"]
    pipe = CsvPipeline()
    s = run_batch(items, out, pipe, formats=CSV)
    assert (s.done, s.skipped) == (2, 0) and len(pipe.calls) == 2  # analysed again under its new name
    # the old folder and its index line stay; the tables hold each input once
    assert (out / "talk").is_dir() and read_index(out)["talk"]["status"] == "ok"
    assert table_recordings(out) == {"sentences": ["s1__talk", "s2__talk"]} | {
        "timeline": ["s1__talk", "s2__talk"]
    }
    s = run_batch(discover(corpus), out, CsvPipeline(), formats=CSV)  # resumed: skipped ones count
    assert s.skipped == 2 and table_recordings(out)["sentences"] == ["s1__talk", "s2__talk"]


def test_corpus_tables_hold_only_the_inputs_of_this_run(tmp_path):
    out = tmp_path / "out"
    audio(tmp_path / "a" / "one.wav", b"one")
    audio(tmp_path / "b" / "two.wav", b"two")
    audio(tmp_path / "b" / "bad.wav", b"bad")
    run_batch(discover(tmp_path / "a"), out, CsvPipeline(), formats=CSV)

    class FailsBad(CsvPipeline):
        def analyze(self, path: Path) -> SimpleNamespace:
            if Path(path).stem == "bad":
                raise InputError(f"{path}: not a readable audio file")
            return super().analyze(path)

    s = run_batch(discover(tmp_path / "b"), out, FailsBad(), formats=CSV)
    assert s.done == 1 and len(s.failed) == 1
    assert table_recordings(out)["sentences"] == ["two"]  # not `one` (another run's), not `bad`
    # a run in which none of its inputs succeeds leaves no table that describes other inputs
    audio(tmp_path / "c" / "bad.wav", b"bad")
    s = run_batch(discover(tmp_path / "c"), out, FailsBad(), formats=CSV)
    assert len(s.failed) == 1
    assert not (out / "sentences.parquet").exists() and not (out / "timeline.parquet").exists()


def test_a_new_file_taking_an_earlier_files_output_name_refuses_the_run(tmp_path):
    # what docs/scaling.md says: such a rename cannot analyse the new file into the old folder
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "s1" / "talk.wav", b"first")
    run_batch(discover(corpus), out, CsvPipeline(), formats=CSV)
    audio(corpus / "talk.wav", b"another")
    assert [i.name for i in discover(corpus)] == ["s1__talk", "talk"]
    pipe = CsvPipeline()
    with pytest.raises(InputError, match=r"talk holds the analysis of .*s1.talk\.wav, not of "):
        run_batch(discover(corpus), out, pipe, formats=CSV)
    assert pipe.calls == []


def test_the_ray_driver_builds_the_corpus_tables_from_this_runs_inputs(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="needs emoflow[ray]")
    from emoflow.batch import ray as engine
    from emoflow.batch.index import record_for, save_output
    from emoflow.config import PipelineConfig

    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "s1" / "talk.wav", b"first")
    run_batch(discover(corpus), out, CsvPipeline(), formats=CSV)  # `talk`, then renamed
    audio(corpus / "s2" / "talk.wav", b"second")

    def pipeline(todo, out, config, formats, concurrency, run, bounds):
        # what the stages and the driver's on_row do, without a cluster
        for item in todo:
            result = CsvPipeline().analyze(item.path)
            save_output(result, out, item.name, formats)
            run.ok(item, record_for(item, "ok", 0.1, result=result))

    monkeypatch.setattr(engine, "start_ray", lambda *a, **k: lambda: None)
    monkeypatch.setattr(engine, "_run_pipeline", pipeline)
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    s = engine.run_batch_ray(discover(corpus), out, PipelineConfig(), formats=CSV)
    assert s.done == 2 and read_index(out)["talk"]["status"] == "ok"
    assert table_recordings(out)["sentences"] == ["s1__talk", "s2__talk"]


# ---- Ray watchdog: a private API it cannot read must not leave the batch unbounded -----------------


def never_a_row(stop_after_s: float = 60.0):
    """Rows that never come (a stalled pipeline); ends after ``stop_after_s`` so that a watchdog
    that never fires fails the test instead of hanging it. Polls, so the row thread can be stopped."""
    deadline = time.monotonic() + stop_after_s
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return
    yield


@pytest.fixture
def fake_ray_job(monkeypatch):
    ray = pytest.importorskip("ray", reason="needs emoflow[ray]")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_job_id=lambda: "01000000"))

    def table(value):
        def actors():
            if isinstance(value, Exception):
                raise value
            return value

        monkeypatch.setattr("ray._private.state.actors", actors)

    return table


def rows_thread_gone() -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name == "emoflow-ray-rows"]:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        (AttributeError("module 'ray._private.state' has no attribute 'actors'"), "failed"),
        (None, "returned a NoneType"),
        ({"a1": {"ActorClassName": "DecodeStage"}}, "without State or JobID"),
        ({}, "lists no actor of this job"),  # readable, but never shows the batch's own actors
    ],
)
def test_a_watchdog_that_cannot_see_the_actors_warns_once_and_bounds_the_wait(
    fake_ray_job, caplog, table, reason
):
    from emoflow.batch.ray_watchdog import WatchBounds, consume

    fake_ray_job(table)
    t0 = time.monotonic()
    stalled = rf"stalled: no recording finished for 1 s .*{reason}"
    with (
        caplog.at_level(logging.WARNING, logger="emoflow.batch.ray_watchdog"),
        pytest.raises(ConfigError, match=stalled),
    ):
        consume(
            never_a_row(),
            lambda r: None,
            WatchBounds(
                pending_timeout_s=0.3,
                blind_stall_timeout_s=1,
                poll_s=0.02,
                check_every_s=0.05,
            ),
        )
    assert time.monotonic() - t0 < 50
    warnings = [r.getMessage() for r in caplog.records if "cannot see which actors" in r.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0]  # visible, once (though checked many times)
    assert rows_thread_gone()


def test_a_watchdog_that_sees_the_actors_never_stops_a_slow_healthy_batch(fake_ray_job, caplog):
    # the blind fallback must not apply while the table is readable: long recordings are fine
    from emoflow.batch.ray_watchdog import WatchBounds, consume

    fake_ray_job({"a1": {"ActorClassName": "AudioStage", "JobID": "01000000", "State": "ALIVE", "Pid": 7}})

    def slow_rows():
        for i in range(3):
            time.sleep(0.5)  # longer than the blind bound below
            yield {"name": str(i)}

    got: list[dict] = []
    with caplog.at_level(logging.WARNING, logger="emoflow.batch.ray_watchdog"):
        consume(
            slow_rows(),
            got.append,
            WatchBounds(
                pending_timeout_s=0.1,
                blind_stall_timeout_s=0.2,
                poll_s=0.02,
                check_every_s=0.02,
            ),
        )
    assert [r["name"] for r in got] == ["0", "1", "2"]
    assert not [r for r in caplog.records if "cannot see" in r.getMessage()]


def test_a_given_stall_timeout_is_kept_when_the_watchdog_is_blind(fake_ray_job):
    from emoflow.batch.ray_watchdog import WatchBounds, consume

    fake_ray_job(RuntimeError("gone"))
    with pytest.raises(ConfigError, match=r"no recording finished for 0.5 s .*RuntimeError: gone"):
        consume(
            never_a_row(),
            lambda r: None,
            WatchBounds(
                stall_timeout_s=0.5,
                blind_stall_timeout_s=3600,
                poll_s=0.02,
                check_every_s=0.05,
            ),
        )
    assert rows_thread_gone()


def test_a_batchs_reports_share_one_plotly_js(tmp_path):
    # issue 12.7: each report inlined 3.5 MB of plotly.js; in a batch they load one shared copy
    from emoflow.export.writers import SHARED_ASSETS

    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "a.wav", b"first")
    audio(corpus / "b.wav", b"second")
    s = run_batch(discover(corpus), out, CsvPipeline(), formats=["json", "html"])
    assert s.done == 2
    shared = list((out / SHARED_ASSETS).glob("plotly-*.min.js"))
    assert len(shared) == 1
    for name in ("a", "b"):
        report = (out / name / "report.html").read_text(encoding="utf-8")
        assert f"../{SHARED_ASSETS}/{shared[0].name}" in report
        assert len(report) < shared[0].stat().st_size  # not inlined


def test_ray_data_helper_actors_are_not_counted_as_the_batch_s():
    """A loaded machine may start Ray Data's own ``_StatsActor`` late: it is not an actor of the
    batch, so the watchdog neither waits on it nor names it (CI once read '2 actor(s)')."""
    from emoflow.batch.ray_watchdog import _unplaced

    table = {
        "a": {"ActorClassName": "MapWorker(MapBatches(Idle))", "State": "PENDING_CREATION", "Pid": 0},
        "b": {"ActorClassName": "_StatsActor", "State": "PENDING_CREATION", "Pid": 0},
        "c": {"ActorClassName": "MapWorker(MapBatches(Text))", "State": "PENDING_CREATION", "Pid": 41},
        "d": {"ActorClassName": "MapWorker(MapBatches(Audio))", "State": "ALIVE", "Pid": 42},
    }
    assert _unplaced(table) == {"a": "MapWorker(MapBatches(Idle))"}
