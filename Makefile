# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test test-fast sample bench proto lint dist docs

install: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Only what the samples need: the package and its dependencies, no test extra.
$(VENV)/.installed-sample: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

# The whole suite, slow reliability tests included (what CI runs).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The main sample pipeline, end to end against the embedded emulator.
sample: $(VENV)/.installed-sample
	$(BIN)/python pipelines/clickstream.py $(ARGS)

# The sdist and the wheel in dist/, their metadata checked (what PyPI would refuse).
# tests/test_wheel_install.py runs this target with DIST_DIR elsewhere.
DIST_DIR ?= dist
dist: $(VENV)/.installed-dist
	rm -rf $(DIST_DIR)
	$(BIN)/python -m build --outdir $(DIST_DIR) .
	$(BIN)/twine check --strict $(DIST_DIR)/*

# The API reference, generated from the docstrings into docs/api/ (not committed):
# the package and every public module (raccoon_beam's __all__ alone would hide them).
PUBLIC_MODULES = import pkgutil, raccoon_beam; \
	print(*(m.name for m in pkgutil.walk_packages(raccoon_beam.__path__, "raccoon_beam.") if "._" not in m.name))
# pdoc comes with the test extra: tests/test_docs.py runs this target.
DOCS_DIR ?= docs/api
docs: install
	rm -rf $(DOCS_DIR)
	$(BIN)/pdoc --docformat google --output-directory $(DOCS_DIR) raccoon_beam $$($(BIN)/python -c '$(PUBLIC_MODULES)')

# The benchmarks (see benchmarks/README.md); ARGS="--quick" for a smoke run.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run $(ARGS)

# ruff and mypy (both in the test extra), as CI runs them.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Regenerate raccoon_beam/_proto from proto/ (tests fail when it is stale).
proto: install
	$(BIN)/python proto/generate.py

# The sample on Beam's portable runner: an external worker pool of SDK worker
# processes on a free local port (how Flink and Spark run Python), then stopped.
.PHONY: sample-portable sample-dask sizing
sample-portable: $(VENV)/.installed-engines
	$(BIN)/python pipelines/engines.py portable -- pipelines/clickstream.py $(ARGS)

# The sample on Beam's Dask runner: a local distributed cluster of 2 worker processes.
sample-dask: $(VENV)/.installed-dask
	$(BIN)/python pipelines/engines.py dask --workers 2 -- pipelines/clickstream.py $(ARGS)

# The sizing measurements of docs/sizing.md (rewrites its table and docs/sizing.png).
sizing: install $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.sizing $(ARGS)
