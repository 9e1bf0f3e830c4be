"""Every benchmark runs in its small mode (seconds, tiny models where it trains or generates), so none can rot
between the runs that measure with it. Each prints what it measures; the ratios of a small run mean nothing."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

BENCHES = sorted((REPO / "bench").glob("*.py"))
PRINTS = {"bad_rows.py": "kinds of bad rows", "generation.py": "batched / one at a time:",
          "train_padding.py": "ratio (ours / TRL defaults", "train_gpu.py": "tokens/s; MFU",
          "scoring_dtype.py": "ratio bf16 / fp32"}


def test_every_bench_is_run_here():
    assert {path.name for path in BENCHES} == set(PRINTS)


@pytest.mark.parametrize("bench", BENCHES, ids=lambda path: path.name)
def test_the_bench_runs_in_small_mode(bench):
    result = subprocess.run([sys.executable, str(bench), "--small"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert PRINTS[bench.name] in result.stdout, result.stdout[-2000:]
    if bench.name == "generation.py" and os.environ.get("MUSIC_VLLM_PYTHON"):  # make test sets it: vLLM's path too
        assert "vLLM server / transformers batched:" in result.stdout, result.stdout[-2000:]
