"""A user's own preference files and mistakes, through real `dvc repro fetch` in a temporary clone (check_params
and fetch, no model): near-duplicate prompts, label-swapped twins, OpenAI-style content parts, HH with CRLF, a
Hub-style folder of shards (every shard read, each a DVC dependency), a local folder given as `source: hf`, the
Hub out of reach. A refusal is one line, exits non-zero and leaves fetch's earlier outputs as they were."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from music_rm.data.conversation import normal_form, prompt_of
from tests.conftest import REPO, repo_params
from tests.test_pipeline import copy_sources, run

OUTPUTS = ("data/fetch/train.jsonl", "data/fetch/test.jsonl", "data/fetch/summary.json", "data/fetch/environment.json")


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone where check_params and fetch have run on the embedded seeds, committed."""
    root = tmp_path_factory.mktemp("user-data")
    copy_sources(root)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copy(REPO / ".dvc/config", root / ".dvc/config")
    run(["dvc", "repro", "fetch"], root)
    commit(root, "embedded")
    return root


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], root)


def repro(root: Path, env=None, sections=None, **fetch) -> subprocess.CompletedProcess:
    """`dvc repro fetch` with params.yaml's fetch section updated by `fetch` (and other sections by `sections`)."""
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(fetch=fetch, **(sections or {})), sort_keys=False))
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    environment.pop("DVC_ROOT", None)
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(["dvc", "repro", "fetch"], cwd=root, env=environment, capture_output=True, text=True)


def outputs(root: Path) -> dict:
    return {path: (root / path).read_bytes() for path in OUTPUTS}


def refusal(result) -> str:
    """The stage's one error line (DVC's own `ERROR: failed to reproduce` follows it), after checking there is one
    and no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(ours) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    return ours[0]


def summary(root: Path) -> dict:
    return json.loads((root / "data/fetch/summary.json").read_text())


def rows(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"data/fetch/{split}.jsonl").read_text().splitlines()]


def turn(role, content):
    return {"role": role, "content": content}


def pair(prompt: str, good="A fine answer.", bad="A poor answer.", system=None) -> dict:
    head = ([turn("system", system)] if system else []) + [turn("user", prompt)]
    return {"chosen": head + [turn("assistant", good)], "rejected": head + [turn("assistant", bad)]}


def write_jsonl(path: Path, items) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


QUESTIONS = [f"Question number {i}: what is {i} plus {i}?" for i in range(40)]


def test_an_export_with_near_duplicate_prompts_text_parts_and_label_swapped_twins(clone):
    """One user export: every prompt with and without a system prompt and once re-spaced (the split keys on the
    normalised prompt and counts the near-duplicates), one message as OpenAI text parts (flattened), one pair also
    present with chosen and rejected swapped (both dropped and counted, with on_invalid skip)."""
    items = [pair(q) for q in QUESTIONS] + [pair(q, system="You are a helpful assistant.") for q in QUESTIONS] + \
            [pair("  " + q.replace(" ", "  \n") + " ", good="A fine  answer.") for q in QUESTIONS]
    items[2]["chosen"][0]["content"] = items[2]["rejected"][0]["content"] = [
        {"type": "text", "text": "Look at this."}, {"type": "text", "text": QUESTIONS[2]}]
    lone = pair("A question asked once?")
    twin = {"chosen": lone["rejected"], "rejected": lone["chosen"]}
    write_jsonl(clone / "export.jsonl", items[:60] + [lone] + items[60:] + [twin])
    result = repro(clone, source="path", path="export.jsonl", on_invalid="skip")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(clone)
    assert s["rows_read"] == 122 and s["rows_kept"] == 120 and s["contradictory_pairs"] == 2, s
    assert s["skipped_by_reason"] == {"contradictory pair: another row has its chosen and rejected swapped": 2}
    # 120 exact prompts, 41 once normalised: the 40 questions and "Look at this.\n<question 2>"
    assert s["prompts"] == 41 and s["near_duplicate_prompts"] == 120 - 41, s
    kept = rows(clone, "train") + rows(clone, "test")
    assert [r["chosen"][0]["content"] for r in kept if r["chosen"][0]["content"].startswith("Look")] == \
           [f"Look at this.\n{QUESTIONS[2]}"]
    assert not any(r["chosen"][0]["content"] == "A question asked once?" for r in kept)
    key = lambda row: json.dumps(normal_form(prompt_of(row["chosen"])))  # noqa: E731
    train, test = {key(r) for r in rows(clone, "train")}, {key(r) for r in rows(clone, "test")}
    assert train and test and not train & test and len(train | test) == 41


def test_a_refused_row_is_one_line_and_leaves_the_earlier_outputs(clone):
    """A label-swapped twin with on_invalid fail (the line names both rows), then an image part: fetch refuses after
    DVC removed its outputs, and puts them back."""
    items = [pair(q) for q in QUESTIONS[:20]]
    twin = {"chosen": items[3]["rejected"], "rejected": items[3]["chosen"]}
    write_jsonl(clone / "swapped.jsonl", items[:10] + [twin] + items[10:])
    before = outputs(clone)
    line = refusal(repro(clone, source="path", path="swapped.jsonl"))
    assert line == ("Error: swapped.jsonl: row 11: row 4 has this pair with chosen and rejected swapped (contradictory "
                    "labels); fetch.on_invalid: skip drops both")
    assert outputs(clone) == before
    items[5]["rejected"][1]["content"] = [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]
    write_jsonl(clone / "parts.jsonl", items)
    line = refusal(repro(clone, source="path", path="parts.jsonl"))
    assert line == ("Error: parts.jsonl: row 6: field 'rejected[1].content[0]': a part of type 'image_url': only text "
                    "parts (text, input_text, output_text) can be read")
    assert outputs(clone) == before


def write_shards(folder: Path, layout: dict[str, list[dict]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, items in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(items), folder / name)


def test_a_hub_style_folder_of_shards_is_read_whole_with_its_split(clone):
    items = [pair(q) for q in QUESTIONS]
    write_shards(clone / "hub-copy", {"data/train-00000-of-00002.parquet": items[:15],
                                      "data/train-00001-of-00002.parquet": items[15:30],
                                      "data/test-00000-of-00001.parquet": items[30:]})
    (clone / "hub-copy" / "README.md").write_text("---\nlicense: mit\n---\n")
    result = repro(clone, source="path", path="hub-copy")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(clone)
    assert s["rows_read"] == 30 and s["origin"] == "hub-copy (2 files, split train)", s
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["fetch"]
    assert any(dep["path"] == "hub-copy" and dep["nfiles"] == 4 for dep in lock["deps"])  # a DVC dependency, whole


def test_a_local_folder_as_source_hf_must_be_fetch_path_so_dvc_tracks_it(clone):
    items = [pair(q) for q in QUESTIONS]
    write_jsonl(clone / "local-hf" / "train.jsonl", items[:30])
    before = outputs(clone)
    line = refusal(repro(clone, source="hf", hf_dataset="local-hf"))
    assert line == ("Error: params.yaml: fetch.hf_dataset: 'local-hf' is a local folder, which DVC tracks only as "
                    "fetch.path (fetch's dependency): set fetch.path to the same folder, so that editing its files "
                    "reruns fetch")
    assert outputs(clone) == before
    result = repro(clone, source="hf", hf_dataset="local-hf", path="local-hf")
    assert result.returncode == 0 and summary(clone)["rows_read"] == 30, result.stderr[-3000:]
    write_jsonl(clone / "local-hf" / "train.jsonl", items[:35])
    result = repro(clone, source="hf", hf_dataset="local-hf", path="local-hf")
    assert "Running stage 'fetch'" in result.stdout and summary(clone)["rows_read"] == 35, result.stdout[-3000:]


# Inputs params.yaml names that check_params refuses (music_rm/core/check.py), before DVC removes any output
BAD_INPUTS = {
    "a file that exists nowhere": (
        {"fetch": {"source": "path", "path": "nowhere.jsonl"}},
        "fetch.path: 'nowhere.jsonl': no such file or folder, and no stage writes it"),
    "fetch.path missing while the source is embedded (fetch depends on it whatever the source)": (
        {"fetch": {"path": "gone.jsonl"}},
        "fetch.path: 'gone.jsonl': no such file or folder, and no stage writes it (fetch's DVC dependency whatever "
        "fetch.source: name a file that exists)"),
    "a pairs file of a variant": (
        {"train": {"variants": {"mine": {"pairs": "data/mine.jsonl"}}}},
        "train.variants.mine.pairs: 'data/mine.jsonl': no such file or folder, and no stage writes it"),
    "an unset key variable": (
        {"simulate": {"backend": "openai", "openai": {"api_key_env": "MUSIC_TEST_UNSET_KEY"}}},
        "simulate.openai.api_key_env: the environment variable MUSIC_TEST_UNSET_KEY is not set"),
    "a vLLM Python that does not exist": (
        {"simulate": {"backend": "openai", "openai": {"start_vllm": True, "api_key_env": None}, "vllm": {"python": "nowhere/bin/python"}}},
        "simulate.vllm.python: 'nowhere/bin/python': no such file (`make vllm` builds .venv-vllm)"),
    "a global batch that does not divide over the processes": (
        {"train": {"accelerate_config": "configs/accelerate/cpu_ddp.yaml", "config": {"global_batch_size": 24}}},
        "train.config.global_batch_size: 24 is not a multiple of batch_size × processes = 8 × 2"),
    "a RewardBench Hub source on a local folder DVC does not track": (
        {"reward_bench": {"sources": {"mine": {"kind": "hf", "hf_dataset": "local-hf", "hf_revision": "main",
                                               "hf_split": "train", "format": "reward_bench",
                                               "path": "stages/reward_bench.py"}}}},
        "reward_bench.sources.mine.hf_dataset: 'local-hf' is a local folder, which DVC tracks only as "
        "reward_bench.sources.mine.path (its stage's dependency): set reward_bench.sources.mine.path to the same "
        "folder, so that editing its files reruns its stage"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_check_params_refuses_the_inputs_a_later_stage_would_fail_on_before_dvc_touches_an_output(clone, case):
    """Each through `dvc repro fetch`: check_params refuses it in one line, DVC runs no other stage."""
    sections, message = BAD_INPUTS[case]
    (clone / "local-hf").mkdir(exist_ok=True)
    before = outputs(clone)
    assert "MUSIC_TEST_UNSET_KEY" not in os.environ
    result = repro(clone, sections={k: v for k, v in sections.items() if k != "fetch"},
                   **sections.get("fetch", {}))
    assert refusal(result) == f"Error: params.yaml: {message}"
    assert "failed to reproduce 'check_params'" in result.stderr and "Running stage 'fetch'" not in result.stdout
    assert outputs(clone) == before


def test_check_params_lets_through_an_input_a_stage_writes(clone):
    """A judge pair set that contrast writes does not exist before the pipeline runs: no refusal."""
    result = repro(clone, sections={"judge": {"pair_sets": {"music": "data/contrast/test.jsonl"}}})
    assert result.returncode == 0, result.stderr[-3000:]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_hub_out_of_reach_is_one_line_naming_the_dataset_and_the_way_out(clone, tmp_path, report):
    before = outputs(clone)
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf-home")}
    start = time.perf_counter()
    result = repro(clone, env=env, source="hf", hf_dataset="Skywork/Skywork-Reward-Preference-80K-v0.2")
    took = time.perf_counter() - start
    line = refusal(result)
    assert line.startswith(f"Error: fetch.hf_dataset 'Skywork/Skywork-Reward-Preference-80K-v0.2' (revision main, "
                           f"split train): the Hugging Face Hub at {env['HF_ENDPOINT']} is out of reach (") and \
        line.endswith(f"use a local copy (fetch.source: path with fetch.path: <its folder>), or HF_HUB_OFFLINE=1 with "
                      f"it in the Hugging Face cache ({tmp_path / 'hf-home' / 'hub'})"), line
    assert "Retrying" not in result.stderr and outputs(clone) == before  # no retries (they slept 23 s)
    report(f"test_user_data: dvc repro fetch with the Hub out of reach refused in {took:.1f} s (wall, check_params "
           "included)")


HUB_LOADERS = {
    "fetch": ("from music_rm.data.sources import read_hf; read_hf('Skywork/Skywork-Reward-Preference-80K-v0.2', "
              "'main', 'train', None)",
              "fetch.hf_dataset 'Skywork/Skywork-Reward-Preference-80K-v0.2' (revision main, split train): ",
              "use a local copy (fetch.source: path with fetch.path: <its folder>)"),
    "base model": ("from music_rm.core.params import BaseParams; from music_rm.data.base_model import prepare; "
                   "from tests.conftest import params_section; "
                   "prepare(params_section('base', source='hub', model_id='google/gemma-2-9b-it'), __import__('pathlib').Path('m'))",
                   "base.model_id 'google/gemma-2-9b-it' (revision main): ", "use a local copy (base.source: embedded)"),
    "RewardBench": ("from music_rm.evaluation.reward_bench import load_hub; load_hub('allenai/reward-bench', 'main', "
                    "'filtered', 'rb')", "reward_bench.sources.rb.hf_dataset 'allenai/reward-bench' (revision main, "
                    "split filtered): ", "use a local copy (a source of kind file)"),
    **{name: (f"from music_rm.evaluation.{module} import load_hub; load_hub('{dataset}', 'main', '{split}', 'fail', "
              f"'{name}')", f"reward_bench.sources.{name}.hf_dataset '{dataset}' (revision main, split {split}): ",
              "use a local copy (a source of kind file)")
       # the paper profile's sources; RMB is not on the Hub from its authors: a user's copy there
       for name, module, dataset, split in (("reward_bench_2", "reward_bench_2", "allenai/reward-bench-2", "test"),
                                            ("rm_bench", "rm_bench", "THU-KEG/RM-Bench", "train"),
                                            ("rmb", "rmb", "my-org/RMB", "train"))},
}


class NotFoundHub:
    """A real HTTP server on 127.0.0.1 that answers 404 to everything: a Hub without the repo asked for."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("hub", ["out of reach", "without the repo"])
@pytest.mark.parametrize("loader", HUB_LOADERS)
def test_every_hub_loader_fails_at_once_in_one_line(loader, hub, tmp_path, report):
    """The real huggingface_hub and datasets code against 127.0.0.1: a closed port (their retries took 25 s), and a
    server that has no repo."""
    code, head, way_out = HUB_LOADERS[loader]
    script = ("import sys, time\nfrom music_rm.core.errors import StageFailure\nstart = time.perf_counter()\n"
              f"try:\n    {code}\nexcept StageFailure as e:\n    print(f'{{time.perf_counter() - start:.2f}}'); print(e)\n")
    with NotFoundHub() if hub == "without the repo" else contextlib.nullcontext(f"http://127.0.0.1:{closed_port()}") \
            as endpoint:
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"),
                                     "PYTHONPATH": str(REPO)})
    took, message = result.stdout.splitlines()
    why = (f"the Hugging Face Hub at {endpoint} is out of reach (ConnectError: " if hub == "out of reach" else
           f"the Hub at {endpoint} has no such repo, or none this token may read (a private one needs HF_TOKEN) (")
    assert message.startswith(head + why), message
    assert way_out in message and "HF_HUB_OFFLINE=1" in message and result.stderr == "", result.stderr
    assert float(took) < 10, took  # huggingface_hub's retries sleep 1 + 2 + 4 + 8 + 8 = 23 s
    report(f"Hub {hub}, {loader}: StageFailure after {float(took):.2f} s (the loader's call only)")
