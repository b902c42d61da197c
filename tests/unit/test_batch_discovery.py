import json

import pytest

from emoflow.batch.index import is_complete, read_index
from emoflow.batch.planning import discover
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

    from emoflow.batch.ray_cluster import _check_reachable
    from emoflow.errors import ConfigError

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    assert time.perf_counter() - t0 < 30  # refused at once; generous for a loaded CI machine
    _check_reachable(None)  # local: nothing to check


def names_for(root, *rels):
    for r in rels:
        touch(root / r)
    return {i.path.relative_to(root).as_posix(): i.name for i in discover(root)}


def test_inputs_that_share_a_stem_get_outputs_of_their_own(tmp_path):
    # issue 11.2: a.wav + a.flac, and x/y.wav + x__y.wav (+ y.wav), used to get one output folder
    names = names_for(tmp_path / "c", "a.wav", "a.flac", "x/y.wav", "x__y.wav", "y.wav", "b.wav")
    assert names["a.wav"] == "a.wav" and names["a.flac"] == "a.flac"
    assert names["y.wav"] == "y" and names["b.wav"] == "b"
    assert names["x/y.wav"].startswith("x__y-") and names["x__y.wav"].startswith("x__y-")
    assert len({n.casefold() for n in names.values()}) == len(names) == 6
    # the same names on every run over the same files (a resumed run finds its outputs)
    assert names_for(tmp_path / "c") == names


def test_names_differ_by_more_than_case_and_never_take_emoflows_own(tmp_path):
    names = names_for(
        tmp_path / "c", "Talk.wav", "talk.wav", "index.jsonl.wav", "...wav", ".h.wav", "_Assets.wav"
    )
    assert len({n.casefold() for n in names.values()}) == 6
    assert names["index.jsonl.wav"] != "index.jsonl"
    assert names["_Assets.wav"].casefold() != "_assets"  # the reports' shared plotly.js lives there
    assert names["...wav"] not in ("..", ".")
    assert names[".h.wav"] == ".h"
    touch(tmp_path / "d" / ".emoflow-lock.wav")
    with pytest.raises(InputError, match="emoflow-lock.wav: cannot give an output folder"):
        discover(tmp_path / "d")


def test_a_folder_follows_symlinked_folders_each_real_folder_once(tmp_path):
    # `batch DIR` used Path.rglob, which does not enter linked folders: their audio was missed
    corpus = tmp_path / "corpus"
    a = touch(corpus / "real" / "a.wav")
    touch(tmp_path / "elsewhere" / "b.flac")
    touch(tmp_path / "single.wav")
    try:
        (corpus / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        (corpus / "loop").symlink_to(corpus, target_is_directory=True)  # back to an ancestor
        (corpus / "twice").symlink_to(corpus / "real", target_is_directory=True)  # a second way in
        (corpus / "one.wav").symlink_to(tmp_path / "single.wav")  # a linked file
        (corpus / "dangling.wav").symlink_to(tmp_path / "missing.wav")
    except (OSError, NotImplementedError):
        pytest.skip("cannot make symlinks here")
    items = discover(corpus)
    rels = [i.path.relative_to(corpus).as_posix() for i in items]
    assert rels == ["linked/b.flac", "one.wav", "real/a.wav"]  # each file once, no loop
    assert [i.name for i in items] == ["b", "one", "a"]
    assert items[2].path == a
    assert discover(corpus) == items  # the same names on every run
