# The two commands of the README: `make demo` and `make test`. Each does all of its own set-up: the Python
# environment (.venv), and the Kubernetes control plane (and for the tests, helm and the Argo CD health-check
# engine) built from source into a cache outside the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-azureml demo-azureml-v2 test unit lint controlplane helm argocd-health clean

$(STAMP): pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]' -e ./dev
	touch $(STAMP)

controlplane:
	@hack/controlplane/build.sh >/dev/null

# The chart tests' helm and the health-check tests' Argo CD engine, built the same way (a few minutes each,
# once); the tests would build them on first use, but here the build is not counted in a test's timeout.
helm:
	@hack/helm/build.sh >/dev/null

argocd-health:
	@hack/argocd-health/build.sh >/dev/null

demo: $(STAMP) controlplane
	$(PY) hack/demo.py

demo-azureml: $(STAMP) controlplane
	$(PY) hack/demo_azureml.py

demo-azureml-v2: $(STAMP) controlplane
	$(PY) hack/demo_azureml_v2.py

# ruff, mypy --strict, and the import-linter contracts of pyproject.toml (the package's layers); the same
# checks as the pre-commit hooks of .pre-commit-config.yaml.
lint: $(STAMP)
	$(VENV)/bin/ruff check operator dev tests hack bench
	$(VENV)/bin/ruff format --check operator dev tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

test: $(STAMP) controlplane helm argocd-health lint
	$(PY) -m pytest

# The pure unit tests alone, in seconds while editing: no control plane, helm or Argo CD, no lint. `make test`
# runs them too, with everything else.
unit: $(STAMP)
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) .demo
