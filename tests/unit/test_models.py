import time

import pytest

from emoflow.errors import ModelUnavailableError
from emoflow.models import ModelCache, ModelSpec, resolve_device, resolve_model_dir


def test_local_directory_is_used_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(ModelSpec(str(tmp_path)), ["config.json"]) == tmp_path


def test_local_directory_missing_files(tmp_path):
    with pytest.raises(ModelUnavailableError, match="lacks model.pt"):
        resolve_model_dir(ModelSpec(str(tmp_path)), ["model.pt"], what="audio model")


def test_offline_missing_hub_model_fails_at_once_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as e:
        resolve_model_dir(
            ModelSpec("someorg/not-downloaded", offline=True, cache_dir=str(tmp_path)),
            ["config.json"],
            what="text emotion model",
            flag="--text-model",
        )
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "someorg/not-downloaded" in msg and "offline" in msg and "--text-model PATH" in msg
    assert "\n" not in msg


def test_env_offline_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ModelSpec("a/b").is_offline
    with pytest.raises(ModelUnavailableError, match="offline"):
        resolve_model_dir(ModelSpec("a/b", cache_dir=str(tmp_path)))


def test_not_a_dir_nor_hub_id():
    with pytest.raises(ModelUnavailableError, match="no such directory"):
        resolve_model_dir(ModelSpec("./missing/model/dir"))


def test_cache_loads_once():
    cache = ModelCache()
    calls = []
    for _ in range(3):
        cache.get(("k", 1), lambda: calls.append(1) or object())
    assert len(calls) == 1 and len(cache) == 1


def test_auto_device_is_cpu_here():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
