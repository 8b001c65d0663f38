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

lint: install ## ruff lint + format check + mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: install ## embedded mode: API + worker, SQLite, local object store, on $(HOST):$(PORT)
	$(BIN)/brainmri serve --host $(HOST) --port $(PORT)

# Native worker / trainer / beat against the docker compose stack's published Postgres, Redis
# and MinIO, for hosts whose accelerator a container cannot use (Apple-Silicon MPS) or bare-metal
# GPU boxes. Start the stack first (`docker compose up -d`, optionally `--scale worker=0`).
# deploy/native.env supplies the localhost settings unless BRAINMRI_BROKER_URL is already set.
# POOL=solo if forked processes misbehave on macOS; CONCURRENCY=N parallel jobs (one model each).
NATIVE_ENV ?= deploy/native.env
CONCURRENCY ?= 1
POOL ?= prefork
NATIVE := set -a; if [ -z "$${BRAINMRI_BROKER_URL:-}" ]; then . "$(NATIVE_ENV)"; fi; set +a;

worker: install ## native worker (predict, evaluate; CUDA/MPS/CPU) against the compose stack
	@$(NATIVE) exec $(BIN)/brainmri worker --queues predict,evaluate --concurrency $(CONCURRENCY) --pool $(POOL)

trainer: install ## native trainer (train queue) against the compose stack
	@$(NATIVE) exec $(BIN)/brainmri trainer

beat: install ## native retrain scheduler against the compose stack (exactly one per stack)
	@$(NATIVE) exec $(BIN)/brainmri beat

bench: install ## inference benchmark (see benchmarks/README.md)
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info

docs: install ## regenerate the README settings table from the code
	$(BIN)/brainmri settings --write-readme README.md
