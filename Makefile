# Lantoa: two commands on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export LANTOA_CACHE_DIR ?= $(HOME)/.cache/lantoa

.PHONY: install demo up down test test-unit bench drill typecheck lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed
	bash infra/system-deps.sh
	$(PY) -m infra.local.kafka fetch >/dev/null
	$(PY) -m infra.local.s3 build >/dev/null

demo: install
	$(PY) -m infra.local.demo

# The local stack left running (broker, S3, emulators, every Lantoa process): prints the URLs and
# writes var/up/lantoa.env for another shell to source; `make down` stops it.
up: install
	$(PY) -m infra.local.up start

down:
	$(PY) -m infra.local.up stop

# The suite CI runs: unit, contract, integration and e2e tests against the real broker
# (started and stopped here; set LANTOA_KAFKA_BOOTSTRAP to use a running one).
test: install
	$(PY) -m infra.local.testenv -- $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit tests/contract $(PYTEST_ARGS)

bench: install
	$(PY) -m infra.local.testenv -- $(PY) -m bench

# Fault drill (bench/drill.py): >= 10,000 deliveries on every channel, kill -9 of each worker type,
# a broker restart, S3 away 30 s, emulator faults. It starts and restarts its own broker, so no
# testenv here. The short form (make drill DRILL_ARGS=--short) runs in CI as tests/e2e/test_drill_short.py.
drill: install
	$(PY) -m bench.drill $(DRILL_ARGS)

typecheck: install
	$(PY) -m mypy schemas streams producers consumers infra

# ruff lint and format check and the import-linter layering contracts in pyproject.toml (CI runs
# them next to mypy --strict); `make format` rewrites.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache
