# The two commands of the README: `make demo` and `make test`. Each does all of its own set-up: the Python
# environment (.venv), and the Kubernetes control plane built from source into a cache outside the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-azureml test lint controlplane clean

$(STAMP): pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]' -e ./dev
	touch $(STAMP)

controlplane:
	@hack/controlplane/build.sh >/dev/null

demo: $(STAMP) controlplane
	$(PY) hack/demo.py

demo-azureml: $(STAMP) controlplane
	$(PY) hack/demo_azureml.py

lint: $(STAMP)
	$(VENV)/bin/ruff check operator dev tests hack bench
	$(VENV)/bin/ruff format --check operator dev tests hack bench
	$(VENV)/bin/mypy

test: $(STAMP) controlplane lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .demo
