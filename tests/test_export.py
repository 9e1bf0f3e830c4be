"""A trained reward-model folder as users meet it: its model card, the export for the Hub, plain transformers."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from music_rm.core.io import write_jsonl
from music_rm.data.sources import fetch
from music_rm.reward.card import EVALUATION_POINTER, artifact_name, model_card, share_hint, training_data
from music_rm.reward.model import load_reward_model
from tests.conftest import REPO, repo_params
from tests.test_sources import params as fetch_params


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    train, test, _ = fetch(fetch_params())
    write_jsonl(root / "train.jsonl", train)
    params = repo_params(train={"config": {"bf16": False, "batch_size": 4, "max_length": 384, "learning_rate": 1e-3}})
    params["train"]["variants"] = {"music": {"pairs": str(root / "train.jsonl")}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for out in ("rm", "rm-again"):
        for stage in (["stages/pairs.py", "--variant", "music"],
                      ["stages/train.py", "--variant", "music", "--seed", "0", "--model", str(tiny_model),
                       "--out", str(root / out)]):
            result = subprocess.run(
                [sys.executable, *stage, "--params", str(root / "params.yaml"), "--reports", str(root / f"{out}-reports")],
                cwd=REPO, capture_output=True, text=True,
                env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/m.db"})
            assert result.returncode == 0, result.stderr[-3000:]
    return root, train, test


def test_every_trained_folder_has_a_deterministic_model_card(trained):
    root, train, _ = trained
    card = (root / "rm" / "music" / "seed-0" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    md5 = hashlib.md5((root / "train.jsonl").read_bytes()).hexdigest()
    assert f"(md5 `{md5}`" in card and f"{len(train)} of {len(train)} pairs used" in card
    assert "tiny-random-test-model-llama" in card and "learning_rate: 0.001" in card
    assert f"training seed 0; the trainer saw {len(train)} pairs ({len(train)} distinct)" in card
    stats = json.loads((root / "rm" / "music" / "seed-0" / "reward_model.json").read_text())["reward_stats"]
    assert f"mean {stats['mean']}" in card and "arXiv:2512.24693" in card
    for name in ("README.md", "reward_model.json", "model.safetensors"):  # no timestamps: same run, same bytes
        assert (root / "rm" / "music" / "seed-0" / name).read_bytes() == (root / "rm-again" / "music" / "seed-0" / name).read_bytes()


def test_the_card_says_what_trained_it_how_to_read_the_raw_reward_and_files_are_readable(trained):
    import math

    from transformers import AutoTokenizer, pipeline

    root, _, test = trained
    folder = root / "rm" / "music" / "seed-0"
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and "datasets" not in meta  # a local test model, embedded seed pairs
    assert "Variant `music`, trained on original pairs only (no MUSIC pairs)" in card
    assert EVALUATION_POINTER in card and 'function_to_apply="none"' in card and "vLLM" in card
    mask = os.umask(0)
    os.umask(mask)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        p.name: oct(0o666 & ~mask) for p in folder.iterdir()}  # model.safetensors too
    # the card's pipeline recipe gives the raw reward; the pipeline's default gives its sigmoid
    with load_reward_model(str(folder)) as rm:
        raw = rm.score([test[0]["chosen"]])[0]
    text = AutoTokenizer.from_pretrained(folder).apply_chat_template(test[0]["chosen"], tokenize=False)
    classify = pipeline("text-classification", model=str(folder))
    assert classify(text, function_to_apply="none")[0]["score"] == pytest.approx(raw, abs=1e-5)
    assert classify(text)[0]["score"] == pytest.approx(1 / (1 + math.exp(-raw)), abs=1e-5)


def test_the_card_names_the_trained_k_and_the_hub_datasets_of_its_pairs():
    pairs = [{"source": "music", "k": 2}, {"source": "Anthropic/hh-rlhf"}, {"source": "Anthropic/hh-rlhf"}]
    data = training_data(pairs)
    assert data == {"k": [2], "sources": {"Anthropic/hh-rlhf": 2, "music": 1}, "datasets": ["Anthropic/hh-rlhf"]}
    summary = {"pairs_used": 3, "pairs": 3, "pairs_truncated": 0, "pairs_dropped_too_long": 0, "max_length": 8,
               "truncation": "drop", "steps": 1, "world_size": 1, "final_loss": 0.5}
    card = model_card("music", {"source": "embedded"}, {}, summary, {}, {}, data)
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["Anthropic/hh-rlhf"]
    assert "trained on MUSIC pairs contrasted over K = 2 assistant turn(s)" in card
    assert "pairs by source: Anthropic/hh-rlhf 2, music 1" in card


def test_export_writes_a_folder_plain_transformers_loads_with_the_same_rewards(trained, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root, _, test = trained
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"suites": {"original": {"models": {"music": {
        "estimate": 0.75, "ci_low": 0.5, "ci_high": 1.0, "n": 12, "seeds": 2,
        "per_seed": {"0": {"estimate": 0.7, "ties": 0}, "1": {"estimate": 0.8, "ties": 0}}}}, "differences": {}}}}))
    result = subprocess.run([sys.executable, "-m", "music_rm", "export", str(root / "rm" / "music" / "seed-0"), str(tmp_path / "out"),
                             "--metrics", str(metrics)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    assert "| suite | music, mean over 2 seeds | this model (seed 0) |" in card
    assert "| original | 0.750 [0.50, 1.00] (12) | 0.700 |" in card
    assert "git tag -a rm-music@v0.1.0" in result.stdout and "dvc artifacts get <repo url> rm-music" in result.stdout
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    conversations = [test[0]["chosen"], test[0]["rejected"]]
    with torch.no_grad():
        plain = [model(**tokenizer(tokenizer.apply_chat_template(c, tokenize=False), return_tensors="pt",
                                   add_special_tokens=False)).logits.item() for c in conversations]
    with load_reward_model(str(root / "rm" / "music" / "seed-0")) as rm:
        assert rm.score(conversations) == pytest.approx(plain, abs=1e-5)
    refused = subprocess.run([sys.executable, "-m", "music_rm", "export", str(root / "rm" / "music" / "seed-0"), str(tmp_path / "x"),
                              "--push-to-hub", "me/rm"], cwd=REPO, capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "HF_TOKEN"})
    assert refused.returncode == 1 and "HF_TOKEN: not set" in refused.stderr and not (tmp_path / "x").exists()


def test_the_notebook_api(trained):
    import music_rm

    root, _, test = trained
    assert {"load_reward_model", "score", "train_reward_model", "fetch", "load_params"} <= set(music_rm.__all__)
    assert all(getattr(music_rm, name).__doc__ for name in music_rm.__all__ if name != "__version__")
    folder = str(root / "rm" / "music" / "seed-0")
    with music_rm.load_reward_model(folder) as rm:
        assert music_rm.score(folder, [test[0]["chosen"]]) == rm.score([test[0]["chosen"]])
    light = subprocess.run([sys.executable, "-c", "import sys, music_rm.core.params; print('torch' in sys.modules)"],
                           cwd=REPO, capture_output=True, text=True)
    assert light.stdout.strip() == "False"  # the API is loaded on first use: a light stage stays light


def test_every_variant_s_artifact_name_is_one_dvc_yaml_declares():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for variant in params["train"]["variants"]:
        assert dvc["artifacts"][artifact_name(variant)]["path"] == f"models/rm/{variant}/seed-{params['train']['seeds'][0]}"
        assert f"git tag -a {artifact_name(variant)}@v0.1.0" in share_hint(variant)
