# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test test-fast sample bench proto lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The whole suite, slow reliability tests included (what CI runs).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The main sample pipeline, end to end against the embedded emulator.
sample: install
	$(BIN)/python pipelines/clickstream.py $(ARGS)

# The benchmarks (see benchmarks/README.md); ARGS="--quick" for a smoke run.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run $(ARGS)

lint: install
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check .

# Regenerate raccoon_beam/_proto from proto/ (tests fail when it is stale).
proto: install
	$(BIN)/python proto/generate.py

# The sample on Beam's portable runner: an external worker pool of SDK worker
# processes on a free local port (how Flink and Spark run Python), then stopped.
.PHONY: sample-portable sample-dask sizing
sample-portable: install
	$(BIN)/python pipelines/engines.py portable -- pipelines/clickstream.py $(ARGS)

# The sample on Beam's Dask runner: a local distributed cluster of 2 worker processes.
sample-dask: install
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	$(BIN)/python pipelines/engines.py dask --workers 2 -- pipelines/clickstream.py $(ARGS)

# The sizing measurements of docs/sizing.md (rewrites its table and docs/sizing.png).
sizing: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.sizing $(ARGS)
