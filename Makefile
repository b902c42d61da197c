# emoflow: two commands on a fresh clone (see README):
#   make demo   installs into .venv and runs the main job on the bundled sample
#   make test   installs (with dev tools) and runs ruff, mypy and the whole test suite
#   (make test-fast: the inner loop; tiny model replicas are built once into .cache/test-replicas)
VENV   ?= .venv
PYTHON ?= python3
PYTEST_ARGS ?=
# The CPU build of torch; set TORCH= "torch==2.13.0 --index-url ..." for a CUDA build.
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
OUT    ?= out

.PHONY: install demo demo-offline test test-fast lint typecheck pytest bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/emoflow analyze examples/sample.flac --out $(OUT)

# the same without network: tiny random replicas + the real Whisper tiny.en from ../shared
demo-offline: install
	$(BIN)/python -m emoflow.testing.replicas .cache/replicas --size tiny
	$(BIN)/emoflow analyze examples/sample.flac --out $(OUT) --offline --asr-model ../shared/models/whisper-tiny.en \
		--audio-model .cache/replicas/emotion2vec --text-model .cache/replicas/text-emotion \
		--encoder-model .cache/replicas/distilbert

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# the inner loop: unit and integration tests without the slow ones (real weights, trainings to
# convergence, end to end); under 3 minutes on 2 cores. Extra pytest options: PYTEST_ARGS="-x -k name"
test-fast: install
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS) tests/unit tests/integration

bench: install
	$(BIN)/python benchmarks/bench_alignment.py
	$(BIN)/python benchmarks/bench_backends.py
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache/test-replicas
