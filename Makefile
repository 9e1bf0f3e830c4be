# `make repro`: set up .venv and run the whole pipeline; `make test`: set up .venv and run the tests.
# `make docs` and `make deps`: regenerate docs/params.md's key reference and dvc.yaml's code deps (the tests
# check both are current).
PYTHON ?= python3
# A CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup repro test docs deps exps ui

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

docs: setup
	. $(BIN)/activate && python -m music_rm schema --markdown --update docs/params.md

deps: setup
	. $(BIN)/activate && python -m music_rm deps

# Experiments side by side: the params that differ between them and every variant's held-out accuracies
# (music-rm exps; `dvc exp show` has every column).
exps: setup
	@. $(BIN)/activate && music-rm exps

# The MLflow UI on this repo's store, and the address of its runs page (the model-training view, with the saved
# view of changed params and accuracies). One web server process: no job workers (they run GenAI jobs: judges,
# trace rollups), which `mlflow ui` otherwise starts as eight more processes (docs/mlflow.md).
PORT ?= 5000
ui: setup
	@. $(BIN)/activate && python -c "from music_rm.core.tracking import ui_url; print('runs:', ui_url($(PORT)))"
	. $(BIN)/activate && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 --port $(PORT) \
		--backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"
