# Lattice: the two commands a new user needs are `make dev` and `make test`.
# Only Python 3.11 (or newer, below 3.13) is required; everything else is installed here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed

.PHONY: dev test lint format bench install clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v < (3, 13) else "Lattice needs Python 3.11 or 3.12, found %d.%d: run make PYTHON=python3.11 ..." % v)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local]' -e clients/python
	@touch $@

$(DEV_STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e clients/python
	@touch $@ $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)

## Run Lattice on the embedded default (SQLite, local storage, in-process worker).
dev: $(RUNTIME_STAMP)
	$(BIN)/python manage.py dev $(ADDR)

## Run the whole test suite. LATTICE_REQUIRE_SERVICES=1 turns "service missing: skip" into a failure.
test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## ruff, the formatter, mypy, and the layer order between apps (import-linter; docs/architecture.md).
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks (bench/README.md). bench/scheduler needs PostgreSQL (DATABASE_URL); start_latency and
## log_stream need PostgreSQL, Redis (REDIS_URL), Docker and the notebook image: skipped without them.
bench: $(DEV_STAMP)
	$(BIN)/python bench/dev_startup.py
	$(BIN)/python bench/scheduler.py
	@if [ -z "$$DATABASE_URL" ] || [ -z "$$REDIS_URL" ] || ! docker info >/dev/null 2>&1; then \
		echo "bench: skipping start_latency and log_stream: they need DATABASE_URL (PostgreSQL), REDIS_URL and Docker"; \
	else \
		$(BIN)/python bench/start_latency.py && $(BIN)/python bench/log_stream.py; \
	fi

clean:
	@# A root `make dev` leaves the warm pool's folder a shared mount (apps/runtimes/pool.py).
	@if [ -d var/agent ] && [ "$$(id -u)" = 0 ]; then \
		grep -o " $(CURDIR)/var/agent/pool[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l; fi
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
