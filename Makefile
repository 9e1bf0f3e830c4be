# `make repro`: set up .venv and run the whole pipeline; `make test`: set up .venv and run the tests.
PYTHON ?= python3
# A CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup repro test exps

$(BIN)/dvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/dvc
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/dvc

repro: setup
	. $(BIN)/activate && dvc repro
	@cat data/eval/report.md

test: $(VENV)/.test-deps
	. $(BIN)/activate && python -m pytest -v --durations=10

# Experiments side by side: the params that differ and the headline metrics, not every column.
exps:
	dvc exp show --no-pager --only-changed --drop '.*' --keep 'Experiment|Created|contrast|simulate.turns|train.variants|accuracy'
