"""A trained reward model: its folder, loading it as it was trained, and scoring conversations and pairs.

A conversation longer than `max_length` tokens is shortened by the rule training follows (data/lengths.py): its
oldest whole exchanges go first, the template's start and the judged answer stay.

On GPUs a model is loaded in bf16 as one replica per GPU that has room for it (a GPU a vLLM engine holds
has not), and the batches are spread over the replicas; the batches themselves do not depend on how many
replicas there are. Use it as a context manager (`with load_reward_model(path) as rm:`) so that its memory
is given back before the next model loads.
"""
import copy
import gc
import hashlib
import json
import math
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from ..core.errors import InputError, ParamsError, StageFailure
from ..core.paths import cache_root
from ..core.store import Store
from ..data.chat_template import load_tokenizer, token_ids
from ..data.lengths import conversation_ids

# Written into every trained reward-model folder: how it was trained, so it is loaded the same way.
CARD_FILE = "reward_model.json"
HEADROOM = 1.25  # a GPU takes a replica when its free memory is over the bf16 weights times this (scoring batches)


def read_card(model_dir: str) -> dict | None:
    """The reward_model.json of a trained reward-model folder, or None."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        return None
    return _model_json(path)


REMEDY = "copy the whole model folder again, or rerun the train stage that wrote it"


def _model_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, None, None, f"not valid JSON ({e}); {REMEDY}") from None


class RewardModel:
    """A loaded reward model: `score` conversations, `score_pairs` preference pairs, `margins`. With `cache`,
    every scored batch is kept by a key of the model's weights, dtype, device type and the batch's token ids, so
    scoring the same conversations again (another experiment of a grid) costs nothing and gives the same bytes."""

    def __init__(self, replicas: list, tokenizer, card: dict, cache=None):
        self.replicas, self.tokenizer, self.card = replicas, tokenizer, card
        self.cache = cache if card.get("weights_sha256") else None
        self.identity = [card.get("weights_sha256"), str(self.model.dtype), self.model.device.type]
        self.truncated = 0  # conversations scored so far that were over max_length and shortened

    @property
    def trained_length(self) -> int | None:
        """The max_length the model was trained with (reward_model.json), None for a folder without one."""
        return self.card.get("max_length")

    def check_max_length(self, max_length: int | None, name: str = "max_length") -> None:
        """Refuse a length under which every conversation, even a one-word exchange, would be cut: its reward
        would be read off a fragment of the template. `name`: the param or option, for the error line."""
        shortest = len(token_ids(self.tokenizer, [{"role": "user", "content": "A"},
                                                  {"role": "assistant", "content": "B"}]))
        if max_length is not None and max_length < shortest:
            raise ParamsError(f"{name} {max_length}: shorter than the {shortest} tokens a one-word exchange takes "
                              "through this model's chat template; every conversation would be scored on a fragment")

    @property
    def model(self):
        return self.replicas[0]

    def score(self, conversations: list[list[dict]], batch_size: int = 8, max_length: int | None = None,
              desc: str = "score") -> list[float]:
        """One reward per conversation (lists of {"role", "content"}), in input order. Notebook defaults: batches
        of 8 and no length limit (the stages pass their section's batch_size and max_length)."""
        self.check_max_length(max_length)
        ids, truncated = length_ruled_ids(self.tokenizer, conversations, max_length)
        self.truncated += truncated
        return score_ids(self.replicas, self.tokenizer.pad_token_id, ids, batch_size, desc, self.cache, self.identity)

    def score_pairs(self, pairs: list[dict], batch_size: int = 8, max_length: int | None = None,
                    desc: str = "score") -> tuple[list[float], list[float]]:
        """(rewards of the chosen conversations, rewards of the rejected ones) of preference pairs."""
        rewards = self.score([p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], batch_size, max_length, desc)
        return rewards[: len(pairs)], rewards[len(pairs):]

    def margins(self, pairs: list[dict], batch_size: int = 8, max_length: int | None = None,
                desc: str = "score") -> list[float]:
        """reward(chosen) - reward(rejected) per pair."""
        chosen, rejected = self.score_pairs(pairs, batch_size, max_length, desc)
        return [c - r for c, r in zip(chosen, rejected)]

    def close(self) -> None:
        """Give the memory back (every replica)."""
        self.replicas.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def bf16_bytes(model_dir: str) -> int:
    """Bytes of the model's weights in bf16, read from the safetensors headers."""
    from safetensors import safe_open

    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return 2 * total


def scoring_devices(model_dir: str) -> list[str]:
    """Every GPU with room for a replica, or the CPU when there is no GPU."""
    if not torch.cuda.is_available():
        return ["cpu"]
    need = HEADROOM * bf16_bytes(model_dir)
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count()) if torch.cuda.mem_get_info(i)[0] >= need]
    if not devices:
        raise StageFailure(f"{model_dir}: no GPU has {need / 2**30:.1f} GiB free for the reward model (a vLLM engine "
                           "may hold it: lower its gpu_memory_utilization, or give the engine fewer GPUs)")
    return devices


WEIGHTS = ("*.safetensors", "pytorch_model*.bin")  # what from_pretrained loads


def check_reward_model(model_dir: str) -> None:
    """Refuse, with one InputError, a folder that is not a reward model: no model there, or a model without a
    scalar score head (a base model's folder)."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise InputError(model_dir, None, None, "not a model folder (no config.json); name one model's folder, "
                                                "e.g. models/rm/music/seed-0")
    config = _model_json(config_path)
    if not any(next(Path(model_dir).glob(pattern), None) for pattern in WEIGHTS):
        raise InputError(model_dir, None, None, f"no weights beside config.json (none of {', '.join(WEIGHTS)}); "
                                                "copy the whole model folder, or rerun the train stage that wrote it")
    heads = [a for a in config.get("architectures") or [] if a.endswith("ForSequenceClassification")]
    if not heads or len(config.get("id2label") or {"0": None}) != 1:
        raise InputError(model_dir, None, None, f"not a reward model: {config.get('architectures')} has no trained "
                                                "scalar score head (train one with the train stage)")


def default_cache() -> Store:
    """The reward-score cache, `.cache/rewards.sqlite` (MUSIC_CACHE_DIR moves it)."""
    return Store(cache_root() / "rewards.sqlite", "scores")


def load_reward_model(model_dir: str, devices: list[str] | None = None, cpu_dtype: str = "float32",
                      cache: bool = False) -> RewardModel:
    """A trained reward model for scoring, with the attention implementation it was trained with (Gemma-2's
    soft-capping exists only in some): on the GPUs in bf16, one replica per GPU with room (`devices`
    overrides), else on the CPU in `cpu_dtype`. Notebook defaults, not params.yaml's: float32 and no score cache
    (a notebook scores once; the stages pass eval.cpu_dtype and eval.cache, true in params.yaml)."""
    from transformers import AutoModelForSequenceClassification

    check_reward_model(model_dir)
    card = read_card(model_dir) or {}
    try:
        devices = devices or scoring_devices(model_dir)  # reads the weights' headers on a GPU machine
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=getattr(torch, cpu_dtype) if devices[0] == "cpu" else torch.bfloat16,
            attn_implementation=card.get("attn_implementation"))
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        # a weights file cut short (a copy or download that stopped), or a config.json transformers cannot read
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(model_dir, None, None, f"cannot load the model ({reason}); {REMEDY}") from None
    model = model.to(devices[0]).eval()
    replicas = [model] + [copy.deepcopy(model).to(device) for device in devices[1:]]
    return RewardModel(replicas, load_tokenizer(model_dir), card, default_cache() if cache else None)


@torch.inference_mode()
def _forward(model, pad_token_id: int, batch: list[list[int]]) -> list[float]:
    width = max(map(len, batch))
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention_mask[row, :len(ids)] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    return logits.squeeze(-1).float().tolist()


def score_ids(models, pad_token_id: int, ids: list[list[int]], batch_size: int, desc: str = "score", cache=None,
              identity=None) -> list[float]:
    """One scalar reward per token-id sequence, in input order: batches of similar lengths (right padding),
    spread over the replicas in `models` (one model or a list), each replica in its own thread; with `cache`,
    a batch scored before (same `identity`, same ids) is read back instead."""
    models = models if isinstance(models, list) else [models]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    scores = [math.nan] * len(ids)
    progress = tqdm(total=len(batches), desc=desc, unit="batch", leave=True)

    def key(idx) -> str:
        return hashlib.sha256(json.dumps([identity, [ids[i] for i in idx]]).encode()).hexdigest()

    def run(replica: int) -> None:
        device = next(models[replica].parameters()).device
        if device.type == "cuda":
            torch.cuda.set_device(device)  # the current device is per thread
        store = cache and type(cache)(cache.db_path, cache.table)  # a SQLite connection per thread
        for idx in batches[replica::len(models)]:
            values = store.get(key(idx)) if store else None
            if values is None:
                values = _forward(models[replica], pad_token_id, [ids[i] for i in idx])
                if store:
                    store.put(key(idx), values)
            for i, value in zip(idx, values):
                scores[i] = value
            progress.update()

    if len(models) == 1:
        run(0)  # in this thread: a sharded model (ZeRO-3, FSDP) gathers its weights with collectives
    else:
        with ThreadPoolExecutor(len(models)) as pool:
            list(pool.map(run, range(len(models))))  # list(): a replica's exception is raised here
    progress.close()
    return scores


def length_ruled_ids(tokenizer, conversations: list[list[dict]], max_length: int | None) -> tuple[list, int]:
    """(the token ids scored per conversation, a conversation over `max_length` tokens shortened by the length
    rule of data/lengths.py; how many were shortened)."""
    ruled = [conversation_ids(tokenizer, c, max_length) for c in conversations]
    return [ids for ids, _ in ruled], sum(shortened for _, shortened in ruled)


def score_conversations(models, tokenizer, conversations: list[list[dict]], batch_size: int, desc: str,
                        max_length: int | None, cache=None, identity=None) -> list[float]:
    """One scalar reward per conversation, in input order; a conversation over `max_length` tokens is shortened
    by the length rule of data/lengths.py."""
    ids, _ = length_ruled_ids(tokenizer, conversations, max_length)
    return score_ids(models, tokenizer.pad_token_id, ids, batch_size, desc, cache, identity)


def score(model, conversations: list[list[dict]], batch_size: int = 8, max_length: int | None = None) -> list[float]:
    """Rewards of `conversations` (lists of {"role", "content"}) by `model`: a trained reward-model folder
    (loaded, used and freed) or a RewardModel; the notebook defaults of `RewardModel.score`."""
    if isinstance(model, RewardModel):
        return model.score(conversations, batch_size, max_length)
    with load_reward_model(str(model)) as rm:
        return rm.score(conversations, batch_size, max_length)
