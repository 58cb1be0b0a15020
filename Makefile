# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs into ./.venv (Python) and ./node_modules (Node).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A classroom hub at http://127.0.0.1:8000 on the Kubernetes stand-in, with a
# local identity provider and sample courses; Ctrl-C stops it (docs/demo.md).
# `make demo DEMO_ARGS="--port 8001"` passes options on.
demo: $(BIN)/.installed node_modules/.installed
	$(BIN)/classroom-spawner demo $(DEMO_ARGS)

test: $(BIN)/.installed node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed node_modules/.installed
	$(BIN)/python benchmarks/roster_load.py

docs: $(BIN)/.installed
	$(BIN)/pip install --quiet -r docs/requirements.txt
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) node_modules docs/_build test-artifacts
