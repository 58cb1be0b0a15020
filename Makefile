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

demo: $(BIN)/.installed node_modules/.installed
	$(BIN)/classroom-spawner check -f jupyterhub_config.py

test: $(BIN)/.installed node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed node_modules/.installed
	$(BIN)/python benchmarks/roster_load.py

docs: $(BIN)/.installed
	$(BIN)/pip install --quiet -r docs/requirements.txt
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) node_modules docs/_build test-artifacts
