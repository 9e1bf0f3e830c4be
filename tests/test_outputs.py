"""core/outputs.py: a stage's outputs replaced together or not at all, also under SIGKILL at every file operation."""
import signal
import subprocess
import sys
import textwrap

import pytest

from music_rm.core.outputs import PREFIX, committed_outputs, recover
from tests.conftest import REPO

OLD = {"a/train.jsonl": "old train\n", "a/test.jsonl": "old test\n", "a/keep.txt": "not this stage's\n",
       "b/model/weights.bin": "old weights\n", "b/model/stale.bin": "gone with the old model\n"}
NEW = {"a/train.jsonl": "new train\n", "a/test.jsonl": "new test\n", "a/keep.txt": "not this stage's\n",
       "b/model/weights.bin": "new weights\n", "b/model/config.json": "{}\n"}


def tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root, files: dict) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


# What a stage does: write every output into the staged folders. Run as a child process, killed by SIGKILL just
# before its Nth os.replace (each atomic write ends in one; so does each output moved in at the commit).
STAGE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from music_rm.core.io import write_text
    from music_rm.core.outputs import committed_outputs

    root, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    real_replace, calls = os.replace, [0]
    def replace(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(*args, **kwargs)
    os.replace = replace
    with committed_outputs(root / "a", root / "b") as (a, b):
        write_text(a / "train.jsonl", "new train\\n")
        write_text(a / "test.jsonl", "new test\\n")
        write_text(b / "model" / "weights.bin", "new weights\\n")
        write_text(b / "model" / "config.json", "{}\\n")
    print(calls[0])
""")


def run_stage(root, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STAGE, str(root), str(kill_at)], cwd=REPO, capture_output=True,
                          text=True)


def test_outputs_replace_theirs_together_and_leave_the_rest(tmp_path):
    write_tree(tmp_path, OLD)
    with committed_outputs(tmp_path / "a", tmp_path / "b") as (a, b):
        (a / "train.jsonl").write_text("new train\n")
        (a / "test.jsonl").write_text("new test\n")
        assert tree(tmp_path)["a/train.jsonl"] == "old train\n"  # nothing moves before the block ends
        (b / "model").mkdir()
        (b / "model" / "weights.bin").write_text("new weights\n")
        (b / "model" / "config.json").write_text("{}\n")
    assert tree(tmp_path) == NEW  # a folder output is replaced whole: the old model's extra file is gone
    assert not list(tmp_path.glob(PREFIX + "*"))


def test_a_failed_block_changes_nothing(tmp_path):
    write_tree(tmp_path, OLD)
    with pytest.raises(RuntimeError), committed_outputs(tmp_path / "a") as a:
        (a / "train.jsonl").write_text("new train\n")
        raise RuntimeError("the stage failed")
    assert tree(tmp_path) == OLD


def test_killed_at_every_write_and_move_old_or_new_never_mixed(tmp_path, report):
    """SIGKILL before each os.replace in turn (the staged writes, the commit point, each output moved in): what
    the next stage finds once it has recovered the staging folder is the old outputs or the new ones."""
    reference = tmp_path / "reference"
    write_tree(reference, OLD)
    result = run_stage(reference, 0)
    assert result.returncode == 0, result.stderr
    total = int(result.stdout)
    assert tree(reference) == NEW
    outcomes = {"old": 0, "new": 0}
    for kill_at in range(1, total + 1):
        root = tmp_path / f"kill-{kill_at}"
        write_tree(root, OLD)
        killed = run_stage(root, kill_at)
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        recover(root)  # what the next stage does first
        found = tree(root)
        assert found in (OLD, NEW), (kill_at, found)
        outcomes["old" if found == OLD else "new"] += 1
        assert not list(root.glob(PREFIX + "*"))
        rerun = run_stage(root, 0)
        assert rerun.returncode == 0 and tree(root) == NEW and not list(root.glob(PREFIX + "*"))
    assert outcomes["old"] and outcomes["new"]  # kills before and after the commit point
    report(f"outputs killed at each of {total} file replacements: {outcomes['old']} left the old outputs, "
           f"{outcomes['new']} the new ones (rolled forward), none mixed")


def test_a_staging_folder_of_a_live_process_is_left_alone(tmp_path):
    import os
    import socket

    live = tmp_path / f"{PREFIX}{socket.gethostname()}.{os.getpid()}.abcdefgh"
    live.mkdir()
    gone = tmp_path / f"{PREFIX}{socket.gethostname()}.{2**22 + 17}.abcdefgh"  # above Linux's default pid_max
    gone.mkdir()
    assert recover(tmp_path) == [gone]
    assert live.is_dir() and not gone.exists()
