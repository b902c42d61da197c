"""The replica cache: one build per recipe, complete entries only, private copies per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoflow.testing import replica_cache
from emoflow.testing.replica_cache import cached_replicas, copy_replicas, recipe_key


@pytest.fixture
def builds(monkeypatch) -> list[Path]:
    """Stand-in for the real builder: writes each folder with one file, records where it built."""
    calls: list[Path] = []

    def build_all(root, size="tiny", vocab=None):
        calls.append(Path(root))
        for name in replica_cache.names(size):
            (Path(root) / name).mkdir(parents=True)
            (Path(root) / name / "weights.bin").write_bytes(b"w")

    monkeypatch.setattr(replica_cache, "build_all", build_all)
    return calls


def test_the_key_follows_the_recipe(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n")
    assert recipe_key("tiny") == recipe_key("tiny") != recipe_key("full")
    assert recipe_key("tiny", vocab) != recipe_key("tiny")
    before = recipe_key("tiny", vocab)
    vocab.write_text("[PAD]\n[UNK]\n")
    assert recipe_key("tiny", vocab) != before


def test_built_once_then_reused(tmp_path, builds):
    first = cached_replicas(tmp_path, "tiny")
    again = cached_replicas(tmp_path, "tiny")
    assert len(builds) == 1 and first == again
    assert sorted(first) == ["distilbert", "emotion2vec", "text-emotion", "whisper"]
    assert [p.name for p in tmp_path.iterdir()] == [recipe_key("tiny")]  # no temporary folder left


def test_an_interrupted_build_leaves_nothing_to_use(tmp_path, monkeypatch):
    def broken(root, size="tiny", vocab=None):
        (Path(root) / "emotion2vec").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(replica_cache, "build_all", broken)
    with pytest.raises(KeyboardInterrupt):
        cached_replicas(tmp_path, "tiny")
    assert list(tmp_path.iterdir()) == []


def test_a_session_that_loses_the_race_uses_the_winners_entry(tmp_path, builds, monkeypatch):
    winner = cached_replicas(tmp_path / "other", "tiny")  # a complete entry, as another session left it
    entry = winner["whisper"].parent
    real_rename = Path.rename

    def rename(self, target):  # the other session renames its build into place first
        real_rename(entry, target)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    paths = cached_replicas(tmp_path, "tiny")
    assert len(builds) == 2 and all(p.is_dir() for p in paths.values())
    assert [p.name for p in tmp_path.iterdir() if p.name != "other"] == [recipe_key("tiny")]


def test_sessions_get_private_copies(tmp_path, builds):
    a = copy_replicas(tmp_path / "a", tmp_path / "cache")
    (a["distilbert"] / "weights.bin").write_bytes(b"changed by a test")
    b = copy_replicas(tmp_path / "b", tmp_path / "cache")
    assert len(builds) == 1 and (b["distilbert"] / "weights.bin").read_bytes() == b"w"
