# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install test test-fast sample bench proto lint browser-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
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
