import json
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from emoflow.errors import ModelUnavailableError
from emoflow.models import ModelCache, ModelSpec, resolve_device, resolve_model_dir
from emoflow.stage import ModelStage


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


def test_auto_device_picks_cuda_only_when_a_gpu_is_visible(monkeypatch):
    import torch

    from emoflow.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"  # asked for explicitly: the CPU even with a GPU


# ---- thread policy (issue 10.3) -------------------------------------------------------------


@pytest.fixture
def keep_threads():
    import torch

    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_set_cpu_threads_is_the_entry_points_call(keep_threads):
    import torch

    from emoflow.errors import ConfigError
    from emoflow.models import available_cores, set_cpu_threads

    set_cpu_threads(3)
    assert torch.get_num_threads() == 3
    set_cpu_threads()
    assert torch.get_num_threads() == available_cores()
    with pytest.raises(ConfigError, match="at least 1"):
        set_cpu_threads(0)


# ---- provenance (issue 10.8) ----------------------------------------------------------------

COMMIT_A = "a" * 8 + "0123456789abcdef0123456789abcdef"
COMMIT_B = "b" * 8 + "fedcba9876543210fedcba9876543210"


def make_model_dir(root: Path, weights: int = 3001) -> Path:
    """A model folder: a config, a weight file, a nested tokenizer file and junk to ignore."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 24}')
    (root / "model.safetensors").write_bytes(rng.integers(0, 256, weights, dtype=np.uint8).tobytes())
    (root / "sub").mkdir()
    (root / "sub" / "tokenizer.json").write_text('{"vocab": [1, 2, 3, 4, 5]}')
    return root


def test_local_directory_content_hash_is_stable_and_follows_the_weights(tmp_path):
    from emoflow.models import directory_digest

    a = make_model_dir(tmp_path / "a")
    h = ModelSpec(str(a)).provenance()
    assert h["source"] == "local" and h["revision"].startswith("sha256:") and len(h["revision"]) == 71
    assert ModelSpec(str(a)).provenance() == h  # stable
    # where the folder lives does not matter, and hidden folders (.cache of a hub download) do not count
    b = make_model_dir(tmp_path / "elsewhere" / "b")
    (b / ".cache").mkdir()
    (b / ".cache" / "meta").write_text("downloaded at noon")
    assert directory_digest(b) == h["revision"]
    # one weight byte changed (same size) gives another hash
    w = b / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[1234] ^= 0xFF
    w.write_bytes(bytes(data))
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # coarse clocks: the mtime moves
    assert directory_digest(b) != h["revision"]
    # a renamed file too
    os.rename(a / "sub" / "tokenizer.json", a / "sub" / "vocab.json")
    assert directory_digest(a) not in (h["revision"], directory_digest(b))


def test_content_hash_is_computed_once_per_folder_state_and_writes_nothing(tmp_path, monkeypatch):
    import emoflow.provenance as m

    d = make_model_dir(tmp_path / "ro", weights=2047)
    calls = []
    real = m._hash_files
    monkeypatch.setattr(m, "_hash_files", lambda files: calls.append(len(files)) or real(files))
    for p in [*d.rglob("*"), d]:
        p.chmod(0o555 if p.is_dir() else 0o444)  # a read-only model folder (shared, or a mounted volume)
    try:
        listing = sorted(p.relative_to(d) for p in d.rglob("*"))
        first = m.directory_digest(d)
        assert m.directory_digest(d) == first and calls == [3]
        assert sorted(p.relative_to(d) for p in d.rglob("*")) == listing
        st = (d / "config.json").stat()
        os.utime(d / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
        assert m.directory_digest(d) == first and calls == [3, 3]  # touched: hashed again, same bytes
    finally:
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def fake_hub_cache(root: Path) -> Path:
    """``models--org--tiny-model`` as huggingface_hub lays it out: refs name commits, snapshots hold files."""
    repo = root / "models--org--tiny-model"
    for commit in (COMMIT_A, COMMIT_B):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(f'{{"commit": "{commit}"}}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_A)
    (repo / "refs" / "v2").write_text(COMMIT_B + "\n")
    return root


def test_hub_model_resolves_to_the_cached_commit_offline(tmp_path, monkeypatch):
    cache = fake_hub_cache(tmp_path / "hub")
    spec = ModelSpec("org/tiny-model", offline=True, cache_dir=str(cache))
    p = spec.provenance()
    assert p == {"id": "org/tiny-model", "revision": COMMIT_A, "requested_revision": None, "source": "hub"}
    assert ModelSpec("org/tiny-model", "v2", offline=True, cache_dir=str(cache)).provenance()["revision"] == (
        COMMIT_B
    )
    pinned = ModelSpec("org/tiny-model", COMMIT_B, offline=True, cache_dir=str(cache)).record()
    assert pinned.revision == COMMIT_B and pinned.requested_revision == COMMIT_B
    assert ModelSpec("org/other", offline=True, cache_dir=str(cache)).provenance()["revision"] is None
    assert (
        ModelSpec("org/tiny-model", "v9", offline=True, cache_dir=str(cache)).provenance()["revision"] is None
    )
    # the environment's cache (read when asked, not when huggingface_hub was imported)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert ModelSpec("org/tiny-model").provenance()["revision"] == COMMIT_A
    # what loading resolves (a snapshot folder) is recorded, and a snapshot folder given as a path
    # is known by its commit
    path = resolve_model_dir(ModelSpec("org/tiny-model"), ["config.json"])
    assert path == cache / "models--org--tiny-model" / "snapshots" / COMMIT_A
    assert ModelSpec(str(path)).provenance()["revision"] == COMMIT_A
    assert ModelSpec("org/tiny-model").record(resolve=True, backend="x").to_dict() == {
        "backend": "x",
        "id": "org/tiny-model",
        "revision": COMMIT_A,
        "requested_revision": None,
        "source": "hub",
    }
    # resolving a model that cannot be had leaves the revision unknown, it does not raise
    assert ModelSpec("org/absent").record(resolve=True).revision is None


def test_provenance_record_keeps_its_core_fields_and_packages_have_versions():
    from emoflow.models import Provenance, package_provenance

    rec = Provenance("m", "r", options={"revision": "spoofed", "pooling": "cls"})
    assert rec.to_dict() == {
        "pooling": "cls",
        "id": "m",
        "revision": "r",
        "requested_revision": None,
        "source": "hub",
    }
    vad = package_provenance("silero-vad", "silero-vad")
    assert vad.source == "package" and vad.revision is not None and vad.revision.startswith("silero-vad==")
    assert package_provenance("x", "no-such-distribution-emoflow").revision is None


def test_a_loaded_local_model_keeps_the_hash_of_what_was_loaded(tmp_path):
    """The model cache keeps the weights it loaded: results name those, even after the folder changes."""
    from emoflow.models import directory_digest

    d = make_model_dir(tmp_path / "loaded", weights=1999)
    loaded = directory_digest(d)
    assert resolve_model_dir(ModelSpec(str(d)), ["config.json"]) == d  # what a stage's load does
    (d / "config.json").write_text('{"hidden_size": 48}')
    st = (d / "config.json").stat()
    os.utime(d / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    assert directory_digest(d) != loaded
    assert ModelSpec(str(d)).provenance()["revision"] == loaded
    resolve_model_dir(ModelSpec(str(d)), ["config.json"])  # loaded again (a cleared cache): the new weights
    assert ModelSpec(str(d)).provenance()["revision"] == directory_digest(d)


def test_provenance_record_round_trips_through_json():
    from emoflow.errors import InputError
    from emoflow.models import Provenance

    rec = Provenance("org/m", COMMIT_A, "main", "hub", {"backend": "transformers", "pause_adjust": True})
    back = Provenance.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec and back.options == rec.options
    assert Provenance.from_dict({"id": "m", "revision": None}).source == "hub"
    with pytest.raises(InputError, match="not a model record"):
        Provenance.from_dict({"id": "m", "revision": None, "source": "elsewhere"})


# ---- the model-stage base (issue 12) ----------------------------------------------------------


class ToyStage(ModelStage[dict]):
    """A stage on a model that is a dict from the folder's config; doubles numbers."""

    kind = "toy"
    what = "toy model"
    flag = "--toy-model"
    required_files = ("config.json",)
    loads: ClassVar[list] = []  # the folders load() was called with (each test starts a fresh list)

    def __init__(self, spec, *, factor: int = 1, loaded=None):
        self.factor = factor
        super().__init__(spec, loaded=loaded)

    def load(self, path):
        self.loads.append(path)
        return json.loads((path / "config.json").read_text())

    def options(self):
        return {"factor": self.factor}

    def preprocess(self, xs):
        import torch

        return torch.tensor(xs, dtype=self.dtype)

    def _forward(self, batch):
        import torch

        assert torch.is_inference_mode_enabled()
        return batch * self.loaded["hidden_size"] * self.factor

    def postprocess(self, out):
        return out.tolist()


def test_model_stage_loads_once_per_model_and_runs_its_three_steps(tmp_path, monkeypatch):
    import torch

    import emoflow.stage

    monkeypatch.setattr(emoflow.stage, "MODEL_CACHE", ModelCache())
    monkeypatch.setattr(ToyStage, "loads", [])
    d = make_model_dir(tmp_path / "toy")
    a = ToyStage(ModelSpec(str(d), device="cpu"))
    b = ToyStage(str(d), factor=2)  # the same model: loaded once, shared
    assert ToyStage.loads == [d] and a.loaded is b.loaded
    assert a.dtype == torch.float32 and a.dtype_name == "float32"
    assert b.run([1.0, 2.0]) == [48.0, 96.0]
    given = ToyStage(str(d), loaded={"hidden_size": 1})  # a model built by the caller: no load
    assert given.run([3.0]) == [3.0] and ToyStage.loads == [d]
    with pytest.raises(ModelUnavailableError, match="toy model directory .* lacks config.json"):
        ToyStage(str(tmp_path))


def test_model_stage_provenance_loads_nothing(tmp_path, monkeypatch):
    from emoflow.provenance import directory_digest

    d = make_model_dir(tmp_path / "toy", weights=1777)
    stage = ToyStage(str(d), factor=3, loaded={"hidden_size": 1})
    rec = stage.provenance()
    assert (rec.id, rec.revision, rec.source, dict(rec.options)) == (
        str(d),
        directory_digest(d),
        "local",
        {"factor": 3},
    )
    assert stage.describe() == rec.to_dict()
