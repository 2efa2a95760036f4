# Each user-facing target creates or refreshes .venv itself: on a fresh machine `make demo` and
# `make test` are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSPECTOR_DIR := .tools/inspector
INSPECTOR_VERSION := 2.12.0

.PHONY: venv demo test test-unit lint bench bench-engine bench-pipeline bench-cost bench-suggestions bench-scale iam-policy clean tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# MCP Inspector's CLI is the third-party MCP client the end-to-end tests drive (from the npm registry).
tools:
	@if command -v npm >/dev/null 2>&1 && [ ! -x $(INSPECTOR_DIR)/node_modules/.bin/mcp-inspector ]; then \
		npm install --silent --no-audit --no-fund --prefix $(INSPECTOR_DIR) \
			@modelcontextprotocol/inspector@$(INSPECTOR_VERSION) >/dev/null 2>&1 \
			|| echo "warning: could not install MCP Inspector; its test will skip"; \
	fi

demo: venv
	$(VENV)/bin/finops-tags demo

test: venv tools
	$(PY) -m pytest -q -ra

test-unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy policies scanner services workers api

bench: venv bench-engine bench-pipeline bench-cost bench-suggestions

bench-engine: venv
	$(PY) -m bench.engine

bench-pipeline: venv
	$(PY) -m bench.pipeline

# Cost of non-compliance over a 1,000,000-row FOCUS file generated from the shared sample (temp dir).
bench-cost: venv
	$(PY) -m bench.cost

# Tag suggestion precision/recall on the demo organization (known tags hidden and asked for back).
bench-suggestions: venv
	$(PY) -m bench.suggestions

# Organization-scale scan (50 accounts x 4 regions x 40 resources) behind a latency/throttling proxy, at 200 ms
# and 50 ms; production mode on this machine's PostgreSQL and Redis (db 12). Takes minutes: not part of `bench`.
bench-scale: venv
	$(PY) -m bench.scale

# Regenerate deploy/iam/*.json and the StackSet template from the collector registry (a test fails when stale).
iam-policy: venv
	$(PY) -m scanner.providers.aws.iam_policy --write

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
