# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs into ./.venv (Python) and ./node_modules (Node).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# the oldest supported Python, for `make test-oldest`: pyenv's 3.10 or python3.10 if there
# is one; otherwise the default Python, still with the oldest dependencies (the first line
# `make test-oldest` prints says which Python ran)
PYTHON_OLDEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3) $(shell command -v python3.10) $(PYTHON))
VENV_OLDEST ?= .venv-oldest

# the Zero to JupyterHub row, for `make test-z2jh`: Python 3.12 (pyenv's or python3.12)
# with exactly what the Z2JH 4.4.0 hub image ships (.ci/z2jh-constraints.txt)
PYTHON_Z2JH ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3) $(shell command -v python3.12) $(PYTHON))
VENV_Z2JH ?= .venv-z2jh

.PHONY: demo test test-oldest test-z2jh k8s-binaries test-k8s lint format bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(BIN)/.lint-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/pip install --quiet -e ".[lint]"
	touch $@

# The JupyterHub projects' formatters and linters (.pre-commit-config.yaml runs the
# same): `make lint` checks the whole tree (pyupgrade rewrites what it would change,
# and fails), `make format` applies them.
# (not the lesson sync, which must stay Python 3.6: pyproject.toml says why)
PY_FILES = git ls-files -z '*.py' ':!classroom_spawner/lessons/sync.py'
lint: $(BIN)/.lint-installed
	$(PY_FILES) | xargs -0 $(BIN)/pyupgrade --py310-plus
	$(BIN)/autoflake --check --quiet -r classroom_spawner tests benchmarks docs jupyterhub_config.py
	$(BIN)/isort --check-only --diff .
	$(BIN)/black --check --diff .
	$(BIN)/flake8 .

format: $(BIN)/.lint-installed
	-$(PY_FILES) | xargs -0 $(BIN)/pyupgrade --py310-plus
	$(BIN)/autoflake --in-place --quiet -r classroom_spawner tests benchmarks docs jupyterhub_config.py
	$(BIN)/isort .
	$(BIN)/black .

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

# The same suite on Python 3.10 with the oldest supported JupyterHub, KubeSpawner and
# OAuthenticator (the browser tests and the 200-pod soak run only in `make test`).
$(VENV_OLDEST)/bin/.installed: pyproject.toml .ci/oldest-constraints.txt
	$(PYTHON_OLDEST) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install --quiet --upgrade pip
	$(VENV_OLDEST)/bin/pip install --quiet -c .ci/oldest-constraints.txt -e ".[test]"
	touch $@

test-oldest: $(VENV_OLDEST)/bin/.installed node_modules/.installed
	$(VENV_OLDEST)/bin/python -c "import sys, jupyterhub, kubespawner, oauthenticator; print('oldest:', sys.version.split()[0], 'jupyterhub', jupyterhub.__version__, 'kubespawner', kubespawner.__version__, 'oauthenticator', oauthenticator.__version__)"
	$(VENV_OLDEST)/bin/pytest -m "not browser" --ignore=tests/test_standin_soak.py $(PYTEST_ARGS)

# The same suite as test-oldest on what the Z2JH 4.4.0 hub image ships (Python 3.12,
# jupyterhub 5.5.0, ...), the versions most admins run. Three rows, none merged: no row
# covers another. Oldest holds the lower bounds (jupyterhub 5.1, oauthenticator 17.2) and
# Python 3.10; this one pins a newer 5.x, kubernetes-asyncio, traitlets and tornado on
# Python 3.12 that neither bound nor newest (jupyterhub 6) runs; newest has the browser tests.
$(VENV_Z2JH)/bin/.installed: pyproject.toml .ci/z2jh-constraints.txt
	$(PYTHON_Z2JH) -m venv $(VENV_Z2JH)
	$(VENV_Z2JH)/bin/pip install --quiet --upgrade pip
	$(VENV_Z2JH)/bin/pip install --quiet -c .ci/z2jh-constraints.txt -e ".[test]"
	touch $@

test-z2jh: $(VENV_Z2JH)/bin/.installed node_modules/.installed
	$(VENV_Z2JH)/bin/python -c "import sys, jupyterhub, kubespawner, oauthenticator, ltiauthenticator, jupyterhub_idle_culler, kubernetes_asyncio, traitlets, tornado; print('z2jh:', sys.version.split()[0], 'jupyterhub', jupyterhub.__version__, 'kubespawner', kubespawner.__version__, 'oauthenticator', oauthenticator.__version__, 'ltiauthenticator', ltiauthenticator.__version__, 'idle-culler', jupyterhub_idle_culler.__version__, 'kubernetes-asyncio', kubernetes_asyncio.__version__, 'traitlets', traitlets.__version__, 'tornado', tornado.version)"
	$(VENV_Z2JH)/bin/pytest -m "not browser" --ignore=tests/test_standin_soak.py $(PYTEST_ARGS)

# A real Kubernetes control plane (docs/realkube.md): etcd, kube-apiserver, kube-scheduler
# and kube-controller-manager of one release, built with Go from the module in k8s/ into
# ${XDG_CACHE_HOME:-~/.cache}/classroom-spawner/k8s/<release>-<hash>/ (cold: ~20 min on
# 2 cores; then nothing). `make test-k8s` runs the hub-level tests on it, with the
# process kubelet as its node.
K8S_TESTS ?= tests/test_realkube.py tests/test_spawner_hub.py tests/test_queue_hub.py tests/test_standin_kubespawner_hub.py tests/test_standin_readonly.py tests/test_e2e_browser.py

# (binaries.py needs only the standard library: no venv, so it can run beside `make test`;
# run_path, because the script's own directory on sys.path would shadow `selectors`)
k8s-binaries:
	$(PYTHON) -c 'import runpy; runpy.run_path("classroom_spawner/local/kube/binaries.py", run_name="__main__")'

test-k8s: k8s-binaries $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m classroom_spawner.local.kube.cluster
	CLASSROOM_KUBE=real $(BIN)/pytest $(K8S_TESTS) $(PYTEST_ARGS)

# roster loading (seconds), then a 200-student class start on the stand-in (~10 min);
# docs/benchmarks.md has the options and the figures
bench: $(BIN)/.installed node_modules/.installed
	$(BIN)/python benchmarks/roster_load.py
	$(BIN)/python benchmarks/class_start_burst.py $(BENCH_ARGS)

docs: $(BIN)/.installed
	$(BIN)/pip install --quiet -r docs/requirements.txt
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(VENV_OLDEST) $(VENV_Z2JH) node_modules docs/_build test-artifacts
