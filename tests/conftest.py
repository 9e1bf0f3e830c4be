import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Gemma-2-9b-it's chat template (tokenizer_config.json): no system role, it raises on one.
GEMMA2_TEMPLATE = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                   "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                   "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                   "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
                   "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
                   "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")


def make_tokenizer(template: str = CHATML):
    """A byte-level BPE tokenizer trained on the seed set, with `template` as its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = (REPO / "music_rm" / "data" / "seeds" / "embedded.jsonl").read_text(encoding="utf-8").splitlines()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "<|im_end|>" if template == CHATML else "<end_of_turn>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token=eos,
                                        pad_token=eos, unk_token="<|endoftext|>")
    tokenizer.chat_template = template
    return tokenizer


def make_tiny_model(path: Path, arch: str = "llama", layers: int = 2, hidden: int = 32, heads: int = 2) -> Path:
    """A random-init decoder (Llama with ChatML, or Gemma-2 with Gemma-2's chat template) and its tokenizer."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer(CHATML if arch == "llama" else GEMMA2_TEMPLATE)
    torch.manual_seed(0)
    shape = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                 num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=2048,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    else:  # Gemma-2's soft-capping (50) barely acts on a tiny random model's logits; 1.0 makes it matter
        model = Gemma2ForCausalLM(Gemma2Config(**shape, head_dim=hidden // heads, attn_logit_softcapping=1.0))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "provenance.json").write_text(json.dumps({"source": f"tiny-random-test-model-{arch}"}))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gemma2(tmp_path_factory) -> Path:
    """A random-init 2-layer Gemma-2 with Gemma-2-9b-it's chat template, which raises on a system message."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gemma2"), arch="gemma2", hidden=32, heads=2)


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a random-init score head, saved as a reward-model folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def repo_params(**sections) -> dict:
    """The repository's params.yaml as data, with `sections` merged in (mappings merge key by key)."""
    import yaml

    from music_rm.core.params import merge

    return merge(yaml.safe_load((REPO / "params.yaml").read_text()), sections)


def params_section(name: str, **overrides):
    """One typed section of the repository's params.yaml, with `overrides` merged in."""
    from music_rm.core.params import Params

    return Params.model_fields[name].annotation.model_validate(repo_params(**{name: overrides})[name])


_REPORTS: list[str] = []


@pytest.fixture
def report():
    """Append a text block to the summary printed at the end of the test run."""
    return _REPORTS.append


def pytest_terminal_summary(terminalreporter):
    if _REPORTS:
        terminalreporter.section("reports")
        for text in _REPORTS:
            terminalreporter.write_line(text + "\n")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED}/data is not present")
    return SHARED / "data"


def run_stage(script: str, *args: str, tmp_path: Path, params: dict):
    """stages/<script> run from the repo root, with `params` written to tmp_path and an MLflow store there."""
    import os
    import subprocess
    import sys

    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, f"stages/{script}", "--params", str(tmp_path / "params.yaml"), *args],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})


def models_folder(tmp_path: Path, reward_model: Path, variants) -> Path:
    """A models/rm-like folder in which every variant is `reward_model`."""
    folder = tmp_path / "models"
    folder.mkdir()
    for variant in variants:
        (folder / variant).symlink_to(reward_model)
    return folder
