#!/usr/bin/env bash
# The GPU checks, in one run on a GPU machine (docs/gpu.md, "What has run on a GPU"): training throughput and MFU
# (bench/train_gpu.py), then tests/test_gpu.py (the train stage under accelerate launch with Gemma-2's
# architecture, scoring with the trained folder; ZeRO-3 on one GPU, full and LoRA, when deepspeed is there).
#
#   bash bench/gpu_checks.sh [OUT_DIR]
#
# On a machine that lacks some packages, put their wheels in .whl/ first: they are installed into
# /tmp/site (nothing else is touched) and put ahead on PYTHONPATH.
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu-checks}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
python3 -c "import music_rm" 2>/dev/null || export PYTHONPATH=$PWD:${PYTHONPATH:-}  # not pip-installed here
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers, accelerate, trl, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
    python3 -c "import deepspeed; print('deepspeed', deepspeed.__version__)" 2>&1 | tail -1
} 2>&1 | tee "$out/versions.txt"
for args in "--precision mixed" "--precision bf16" "--precision mixed --pairs 8"; do
    timeout 120 python3 bench/train_gpu.py $args 2>&1 | grep -v -i warn
done | tee "$out/train_gpu.txt"
timeout 420 python3 -m pytest -m gpu -s -v -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test_gpu.txt" | grep -v "it/s\]"
