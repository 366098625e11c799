# The two commands of the README: `make demo` and `make test`. Each does all of its own set-up: the Python
# environment (.venv), and the Kubernetes control plane (and for the tests, helm, the Argo CD engine, kstatus,
# promtool and Prometheus, and the operator's image) built from source into a cache outside the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-azureml demo-azureml-v2 test unit soak lint tools controlplane helm argocd-health kstatus prometheus image clean

$(STAMP): pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev,local]' -e ./dev
	touch $(STAMP)

controlplane:
	@hack/controlplane/build.sh >/dev/null

# The chart tests' helm and the health-check tests' Argo CD engine, built the same way (a few minutes each,
# once); the tests would build them on first use, but here the build is not counted in a test's timeout.
helm:
	@hack/helm/build.sh >/dev/null

argocd-health:
	@hack/argocd-health/build.sh >/dev/null

# kstatus (sigs.k8s.io/cli-utils), what Flux and kpt compute a resource's status with (a minute, once).
kstatus:
	@hack/kstatus/build.sh >/dev/null

# promtool (the alerts' unit tests) and prometheus (a real scrape), from one pinned Prometheus release.
prometheus:
	@hack/prometheus/build.sh >/dev/null

# The operator's image, with buildah on a Debian base made by debootstrap (both installed with apt-get where
# missing, as root); the base and the dependencies' layer are cached outside the repository (hack/image/build.sh).
image:
	@hack/image/build.sh

demo: $(STAMP) controlplane
	$(PY) hack/demo.py

demo-azureml: $(STAMP) controlplane
	$(PY) hack/demo_azureml.py

demo-azureml-v2: $(STAMP) controlplane
	$(PY) hack/demo_azureml_v2.py

# ruff, mypy --strict, the import-linter contracts of pyproject.toml (the package's layers), and no private member
# of a library (the Azure SDKs') in the product; the same checks as the pre-commit hooks of .pre-commit-config.yaml.
# Then the chart's README of its values, which hack/chart_values_readme.py writes from values.schema.json and
# values.yaml, must be up to date.
lint: $(STAMP)
	$(VENV)/bin/ruff check operator dev tests hack bench
	$(VENV)/bin/ruff format --check operator dev tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) hack/private_members.py operator/gpu_model_operator
	$(PY) hack/chart_values_readme.py --check

# Everything the tests run, built side by side: on a cold machine the image's downloads (debootstrap, the wheels)
# overlap the Go compiles. Each lands in the cache outside the repo; a second run finds them all at once.
tools:
	@$(MAKE) --no-print-directory -j 3 controlplane helm argocd-health kstatus prometheus image >/dev/null

# The suite in parallel (pytest-xdist): the e2e tests mostly wait, so TEST_WORKERS processes share 2 cores well.
# Each worker has its own control plane; a file is the unit handed out, longest first, in the order the
# collection gives (tests/parallel.py), not xdist's own (by number of tests). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4

test: $(STAMP) tools lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=30

# The pure unit tests alone, in seconds while editing: no control plane, helm or Argo CD, no lint. `make test`
# runs them too, with everything else.
unit: $(STAMP)
	$(PY) -m pytest tests/unit

# The invariants over tens of thousands of generated histories (tests/invariants; `make test` runs a few hundred):
# GMO_HISTORIES sets how many.
soak: $(STAMP)
	GMO_HYPOTHESIS_PROFILE=soak $(PY) -m pytest -p no:cacheprovider -o timeout=0 tests/invariants

clean:
	rm -rf $(VENV) .demo
