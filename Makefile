# fraudstream: `make run` runs the pipeline on simulated traffic, `make test` passes the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install system-deps run test screenshots bench evaluate soak lint clean

install: $(STAMP)

# setup.py compiles the core modules fraudstream/core/native.py lists (mypyc): an edit to any core module installs
# again at the next make, so an edited compiled one is compiled again.
NATIVE := $(shell find fraudstream/core -name '*.py')

$(STAMP): pyproject.toml setup.py $(NATIVE)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Debian packages the tests use: promtool and a real Prometheus, Node.js for the KafkaJS client test, headless Chromium
# and its driver for the console's browser tests.
system-deps:
	@# Only what is missing: where Node.js comes from NodeSource, its npm is built in and Debian's npm conflicts with it.
	@missing=""; \
	if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then missing="prometheus"; fi; \
	if ! command -v node >/dev/null; then missing="$$missing nodejs"; fi; \
	if ! command -v npm >/dev/null; then missing="$$missing npm"; fi; \
	if ! command -v chromium >/dev/null; then missing="$$missing chromium"; fi; \
	if ! command -v chromedriver >/dev/null; then missing="$$missing chromium-driver"; fi; \
	if [ -n "$$missing" ]; then \
	    apt-get update && apt-get install -y --no-install-recommends $$missing; \
	fi
	@if [ -f tests/js/package.json ] && [ ! -d tests/js/node_modules ]; then \
	    cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	fi

run: install
	$(BIN)/fraudstream run

test: install system-deps
	@# Three xdist workers, one module each at a time, the slowest modules first (tests/conftest.py, SLOW_FIRST): most
	@# broker and worker tests wait (group joins, worker starts), so three overlap well on two cores. Under four, a worker
	@# restarted in tests/reliability/test_crash.py stalled twice in three runs.
	$(BIN)/pytest -q -n 3 --dist loadfile --no-loadscope-reorder --durations=20  # the slowest, so that the 10-minute budget is watched in every CI log

# The README's images of the console's pages (docs/console/): the browser tests, saving into docs/ instead of
# var/screenshots/. On demand only, so that `make test` leaves the tree clean; commit the images if they are better.
screenshots: install system-deps
	FRAUDSTREAM_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/console/test_browser.py

bench: install
	$(BIN)/python -m fraudstream.tools.bench

evaluate: install
	$(BIN)/python -m fraudstream.evaluation.compare

soak: install
	$(BIN)/python -m fraudstream.tools.soak

lint: install
	$(BIN)/ruff check fraudstream tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
