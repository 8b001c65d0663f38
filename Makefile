# Brain MRI tumor triage - research/triage only, not a medical device.
# Quick start: `make test` (venv + install + whole suite), `make run` (embedded service).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint format run worker trainer beat bench clean docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv if missing and install the project with its pinned dependencies

test: install ## run the whole test suite
	@scripts/ensure-test-tools.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: install ## embedded mode: API + worker, SQLite, local object store, on $(HOST):$(PORT)
	$(BIN)/brainmri serve --host $(HOST) --port $(PORT)

bench: install ## inference benchmark (see benchmarks/README.md)
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info

docs: install ## regenerate the README settings table from the code
	$(BIN)/brainmri settings --write-readme README.md
