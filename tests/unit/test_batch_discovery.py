import json

import pytest

from emoflow.batch.local import discover, is_complete, read_index
from emoflow.errors import InputError


def touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folder_glob_manifest_and_unique_names(tmp_path):
    a = touch(tmp_path / "corpus" / "s1" / "talk.wav")
    b = touch(tmp_path / "corpus" / "s2" / "talk.flac")
    c = touch(tmp_path / "corpus" / "other.mp3")
    touch(tmp_path / "corpus" / "notes.txt")
    items = discover(tmp_path / "corpus")
    assert [i.path for i in items] == [c, a, b]
    assert [i.name for i in items] == ["other", "s1__talk", "s2__talk"]
    assert [i.path for i in discover(str(tmp_path / "corpus" / "**" / "*.wav"))] == [a]
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "corpus/other.mp3", "label": "joy"})
        + "\n"
        + json.dumps({"audio": str(a)})
        + "\n"
    )
    assert [i.path for i in discover(tmp_path / "m.jsonl")] == [c, a]
    (tmp_path / "list.txt").write_text(f"{b}\n\n")
    assert [i.path for i in discover(tmp_path / "list.txt")] == [b]


def test_nothing_to_do_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio files"):
        discover(tmp_path / "empty")


def test_index_ignores_a_torn_last_line_and_keeps_the_latest(tmp_path):
    (tmp_path / "index.jsonl").write_text(
        json.dumps({"name": "a", "status": "failed"})
        + "\n"
        + json.dumps({"name": "a", "status": "ok"})
        + "\n"
        + '{"name": "b", "sta'
    )
    assert read_index(tmp_path) == {"a": {"name": "a", "status": "ok"}}


def test_is_complete(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "result.json").write_text("{}")
    assert is_complete(d, ["json"]) and not is_complete(d, ["json", "csv"])


def test_unreachable_ray_address_fails_at_once():
    import time

    from emoflow.batch.ray import _check_reachable
    from emoflow.errors import ConfigError

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    assert time.perf_counter() - t0 < 6
    _check_reachable(None)  # local: nothing to check
