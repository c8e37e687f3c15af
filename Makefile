# The README's two commands. Both create .venv and install liss on first use (pip, ~3 min).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup train test lint defaults

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dali,dev,export]'
	touch $(STAMP)

## The main job: synthetic data (once), then the quickstart LiSS training, tracked in MLflow.
train: $(STAMP)
	$(PY) -m liss data synth data/synth --if-missing
	$(PY) -m liss train configs/quickstart.yaml $(ARGS)

## The tests: lint, then the whole suite.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

## Regenerate configs/default.yaml from the config dataclasses.
defaults: $(STAMP)
	$(PY) -m liss config defaults > configs/default.yaml
