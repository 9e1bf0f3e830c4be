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

# Experiments side by side: the columns that matter, not every param and metric. Columns are regexes
# matched from the start of a name; add the params of your ablation: make exps EXP_COLUMNS='…|eval\..*'
EXP_COLUMNS ?= Experiment|Created|contrast\.turns|.*\.(original|music)\.accuracy
exps:
	dvc exp show --no-pager --drop '.*' --keep '$(EXP_COLUMNS)'
