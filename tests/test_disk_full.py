"""A full disk where fetch writes its outputs, where checkpoints go and where the generation cache lives: each stage
ends in one line naming the folder and the space left there, keeps what it had (old outputs, complete checkpoints,
cached generations), and the rerun with space resumes. Each disk is a real tmpfs of a few hundred KiB (mounting it
needs root; CI runs as root)."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from music_rm.core.io import write_jsonl
from music_rm.data.sources import fetch
from music_rm.reward.train import CHECKPOINT_COMPLETE
from tests.conftest import REPO, write_manifests
from tests.test_interrupt import small_simulate
from tests.test_sources import params as fetch_params

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def stage(script: str, root: Path, *args, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    if cache:
        env["MUSIC_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, str(REPO / "stages" / script), "--params", str(root / "params.yaml"),
                           *args], cwd=root, env=env, capture_output=True, text=True)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The stage failed with exit 1 and one error line, no traceback; returns that line."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    return line


@pytest.fixture
def root(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_fetch_on_a_full_disk_says_so_in_one_line_keeps_its_old_outputs_and_the_rerun_writes_them(root):
    with tmpfs(root / "data", "48k") as data:
        old = {"train.jsonl": "old train\n", "test.jsonl": "old test\n", "summary.json": "{}\n"}
        (data / "fetch").mkdir()
        for name, text in old.items():
            (data / "fetch" / name).write_text(text)
        line = one_error_line(stage("fetch.py", root, "-q"))
        assert re.fullmatch(r"Error: data: disk full after this run wrote [\d.]+ KiB there \(removed; [\d.]+ KiB free "
                            r"of 48\.0 KiB now\): free space there and rerun \(data/fetch: as before this run\)",
                            line), line
        assert {name: (data / "fetch" / name).read_text() for name in old} == old
        assert [p.name for p in data.iterdir()] == ["fetch"]  # no staging folder left
        grow(data, "1m")
        rerun = stage("fetch.py", root, "-q")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert (data / "fetch" / "train.jsonl").read_text() != old["train.jsonl"]


def test_a_checkpoint_that_does_not_fit_is_one_line_and_the_rerun_resumes_from_the_last_whole_one(root, tiny_model):
    """The disk fills up (a filler file) once the first checkpoint is saved, while the process is stopped."""
    train, _, _ = fetch(fetch_params())
    write_jsonl(root / "train.jsonl", train)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["config"].update(bf16=False, batch_size=2, max_length=384, learning_rate=1e-3, save_steps=2)
    params["train"]["variants"] = {"baseline": {"pairs": str(root / "train.jsonl")}}
    # the stage runs in `root`, not the repo: the accelerate config it launches with by its path from the repo
    params["train"]["accelerate_config"] = str(REPO / params["train"]["accelerate_config"])
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_manifests(root / "params.yaml", root / "reports")
    args = ["--variant", "baseline", "--seed", "0", "--model", str(tiny_model), "--out", str(root / "rm"),
            "--reports", str(root / "reports")]
    with tmpfs(root / "cache", "8m") as cache:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "MUSIC_CACHE_DIR": str(cache)}
        proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py"), "--params",
                                 str(root / "params.yaml"), *args],
                                cwd=root, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not list(cache.glob(f"checkpoints/*/checkpoint-2/{CHECKPOINT_COMPLETE}")):
            assert proc.poll() is None and time.time() < deadline, "no checkpoint was saved"
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)
        free = os.statvfs(cache).f_bavail * os.statvfs(cache).f_frsize
        with open(cache / "filler", "wb") as filler:
            filler.write(b"\0" * (free - 64 * 1024))  # 64 KiB left: not enough for the next checkpoint
        proc.send_signal(signal.SIGCONT)
        _, stderr = proc.communicate(timeout=300)
        line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
        [folder] = cache.glob("checkpoints/baseline-seed-0-*")
        assert re.fullmatch(rf"Error: cache/checkpoints/{folder.name}: disk full \([\d.]+ KiB free of 8\.0 MiB\): "
                            r"free space there or move the cache \(MUSIC_CACHE_DIR\), and rerun: it resumes from "
                            r"checkpoint-2 \(a checkpoint takes [\d.]+ KiB\)", line), line
        assert not (root / "rm" / "baseline" / "seed-0").exists()
        (cache / "filler").unlink()
        rerun = stage("train.py", root, *args, cache=cache)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"resumed from {folder}/checkpoint-2" in rerun.stdout
        assert (root / "rm" / "baseline" / "seed-0" / "model.safetensors").is_file()


def test_a_full_generation_cache_is_one_line_and_the_rerun_resumes_from_what_it_holds(root, tiny_model):
    (root / "params.yaml").write_text(yaml.safe_dump(small_simulate(root)))
    args = ["--data", str(root / "data"), "--model", str(tiny_model), "--out", str(root / "sim")]
    with tmpfs(root / "cache", "160k") as cache:
        line = one_error_line(stage("simulate.py", root, *args, cache=cache))
        match = re.fullmatch(r"Error: cache: disk full \([\d.]+ (KiB|B) free of 160\.0 KiB\): free space there or move "
                             r"the cache \(MUSIC_CACHE_DIR\), and rerun: it resumes from the (\d+) finished units of "
                             r"work generation.sqlite holds", line)
        assert match and int(match.group(2)) > 0, line
        assert not (root / "sim" / "trees.jsonl").exists()
        grow(cache, "8m")
        rerun = stage("simulate.py", root, *args, cache=cache)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        reused = sum(int(n) for n in re.findall(r"(\d+) units from the cache", rerun.stderr))
        assert reused == int(match.group(2)), rerun.stderr[-3000:]
        assert (root / "sim" / "trees.jsonl").is_file()
