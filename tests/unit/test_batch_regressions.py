"""Batch runner regressions (issues 10.1, 11.1, 11.2, 11.11): a fake pipeline, no models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emoflow.batch.local import LOCK, discover, output_lock, read_index, run_batch
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
    from emoflow.batch.local import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_batch_into_the_same_folder_is_refused_at_once(tmp_path):
    # issue 11.11: two batches on one --out duplicated work and could replace an index record with a stub
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    audio(corpus / "talk.wav")
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        pipe = FakePipeline()
        t0 = time.monotonic()
        with pytest.raises(InputError, match=rf"{out}: another emoflow batch \(pid {holder.pid}\)"):
            run_batch(discover(corpus), out, pipe, formats=FORMATS)
        assert time.monotonic() - t0 < 5 and pipe.calls == []
        assert not (out / "index.jsonl").exists()
    finally:
        holder.communicate("\n", timeout=60)
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
    from emoflow.batch.ray import _fits

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
    from emoflow.batch.ray import plan_resources

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
    from emoflow.batch.ray import plan_resources

    with pytest.raises(ConfigError, match="cannot hold 500 stage actors .*lower --concurrency"):
        plan_resources([{"CPU": 2.0}], 100)
    with pytest.raises(ConfigError, match="at least 1"):
        plan_resources([{"CPU": 2.0}], 0)


def test_ray_start_up_is_bounded(monkeypatch):
    ray = pytest.importorskip("ray", reason="needs emoflow[ray]")
    from emoflow.batch import ray as engine

    release = threading.Event()
    monkeypatch.setattr(ray, "init", lambda **kw: release.wait(60))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    t0 = time.monotonic()
    try:
        with pytest.raises(ConfigError, match="could not start a local Ray instance within 0.5 s"):
            engine.start_ray(None, timeout_s=0.5)
        assert time.monotonic() - t0 < 10
    finally:
        release.set()
