# ChatMesh developer commands. The two that matter:
#   make dev    set up and run the whole product (embedded mode) on http://127.0.0.1:8000
#   make test   set up and run every check and test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv is installed with pip when missing and then run as a module, so nothing
# depends on ~/.local/bin being on PATH.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
BUF := node_modules/.bin/buf
# The Grafana dashboard check (tests/ops) type-checks it with these.
TSC := node_modules/.bin/tsc
GRAFANA_SCHEMA := node_modules/@grafana/schema/package.json
WEB := clients/web

.PHONY: help dev run setup uv py-deps node-deps web web-check proto proto-check lint format typecheck pytest test bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

dev: setup web run  ## install, build the UI, run everything on http://127.0.0.1:8000

run:  ## run the mesh without reinstalling
	$(UV) run --frozen chatmesh dev

setup: uv py-deps node-deps  ## install Python and Node dependencies (idempotent)

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

py-deps:
	$(UV) sync --all-packages --locked

node-deps:
	@[ -x $(BUF) ] && [ -x $(TSC) ] && [ -f $(GRAFANA_SCHEMA) ] || npm ci --no-audit --no-fund --loglevel=error

web:  ## build the web UI static export (skipped when clients/web does not exist yet)
	@if [ -f $(WEB)/package.json ]; then \
	  cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run build; \
	else echo "clients/web not present: the BFF serves a placeholder page"; fi

web-check:  ## web UI: npm ci, eslint, tsc, vitest, and the static export the browser tests load
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run lint && npm run typecheck && npm test && npm run build

proto:  ## regenerate clients/python from proto/
	./scripts/gen_proto.sh

proto-check: node-deps  ## buf lint + format + breaking, and codegen leaves no diff
	$(BUF) lint
	$(BUF) format -d --exit-code
	./scripts/buf_breaking.sh
	./scripts/gen_proto.sh >/dev/null 2>&1
	@git diff --exit-code --stat -- clients/python || { echo "generated code is stale: run make proto and commit"; exit 1; }
	@[ -z "$$(git status --porcelain -- clients/python)" ] || { git status --porcelain -- clients/python; echo "untracked generated files: run make proto and commit"; exit 1; }

lint:  ## ruff lint + format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format:  ## apply ruff fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

typecheck:  ## mypy --strict over services, bff and cli
	$(UV) run --frozen mypy services/common/src services/auth/src services/user/src services/chat/src services/mail/src bff/src cli/src

pytest:  ## the test suite (real PostgreSQL and Redis)
	$(UV) run --frozen pytest

test: setup lint typecheck proto-check web-check pytest  ## everything CI runs (browser tests need chromium)

bench: setup  ## benchmarks (print numbers)
	$(UV) run --frozen python bench/auth.py

clean:
	rm -rf .chatmesh .mypy_cache .ruff_cache .pytest_cache
