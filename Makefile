# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test test-fast test-lowest sample sample-yaml bench proto lint browser-deps dist docs

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
test: install browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's chromium and chromedriver, for the console's browser test
# (tests/emulator/test_console_browser.py, which fails without them). Installed
# only when missing and when root can install them (a CI machine).
browser-deps:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	fi

# Everything but the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The fast suite on the lowest apache-beam that pyproject.toml declares, in a venv of its own
# (CI runs it after `make test`, which runs everything on the newest). The version is read from
# the dependency line, so the range and what CI checks cannot drift apart.
LOWEST_VENV ?= .venv-lowest
LOWEST_BEAM = $(shell sed -n 's/^  "apache-beam>=\([0-9.]*\),.*/\1/p' pyproject.toml)
test-lowest: $(LOWEST_VENV)/.installed-$(LOWEST_BEAM)
	$(LOWEST_VENV)/bin/python -c 'import apache_beam; assert apache_beam.__version__ == "$(LOWEST_BEAM)", apache_beam.__version__'
	$(LOWEST_VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

$(LOWEST_VENV)/.installed-%: pyproject.toml
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -e '.[test]' 'apache-beam[yaml]==$*'
	touch $@

# The main sample pipeline, end to end against the embedded emulator.
sample: $(VENV)/.installed-sample
	$(BIN)/python pipelines/clickstream.py $(ARGS)

# The Beam YAML sample (pipelines/clickstream.yaml) on Beam's in-process runner, against
# an embedded emulator that raccoon_beam.yaml_sample starts; installs the yaml extra.
sample-yaml: $(VENV)/.installed-yaml
	$(BIN)/python -m raccoon_beam.yaml_sample -- \
		$(BIN)/python -m apache_beam.yaml.main --yaml_pipeline_file=pipelines/clickstream.yaml --runner=FnApiRunner $(ARGS)

# The sdist and the wheel in dist/, their metadata checked (what PyPI would refuse).
# tests/test_wheel_install.py runs this target with DIST_DIR elsewhere.
DIST_DIR ?= dist
dist: $(VENV)/.installed-dist
	rm -rf $(DIST_DIR)
	$(BIN)/python -m build --outdir $(DIST_DIR) .
	$(BIN)/twine check --strict $(DIST_DIR)/*

# The documentation site (mkdocs.yml: the guides in docs/ and the API reference of
# the public API), built with --strict (a warning, a broken link or a page missing
# from the navigation fails it) into site/ (not committed). .ci/run builds it.
SITE_DIR ?= site
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(SITE_DIR)

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
