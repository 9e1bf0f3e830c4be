"""Export a trained reward model: a folder ready for `push_to_hub`, or pushed when asked and a token is set.

    music-rm export models/rm/music/seed-0 exports/music                  # weights, tokenizer, card with eval numbers
    HF_TOKEN=... music-rm export models/rm/music/seed-0 exports/music --push-to-hub you/music-rm-smollm2

The folder loads with plain transformers (AutoModelForSequenceClassification, AutoTokenizer). Its README.md is
the model card the train stage wrote, with the evaluation numbers of `--metrics` added (data/eval/metrics.json,
the held-out suites, by default).
"""
import os
import shutil
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.errors import InputError, StageFailure
from ..core.io import atomic_path, read_json
from ..core.paths import model_identity
from ..evaluation.report import cell, markdown_table
from ..reward.card import EVALUATION_POINTER, share_hint
from ..reward.model import CARD_FILE, check_reward_model

FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model", CARD_FILE, "README.md")


def evaluation_section(metrics: dict, variant: str, seed: int | None, source: str) -> str | None:
    """The held-out accuracies of the variant (mean over its seeds, 95% interval over seeds and pairs) and of this
    model's seed, as a markdown table, or None when the metrics do not name the variant."""
    suites = {suite: s["models"][variant] for suite, s in metrics.get("suites", {}).items() if variant in s["models"]}
    if not suites:
        return None
    first = next(iter(suites.values()))
    seeds = first["seeds"]
    own = [s for s in [seed] if s is not None and str(s) in first["per_seed"]]
    rows = [[suite, cell(r["estimate"], r["ci_low"], r["ci_high"], r["n"]),
             *(f"{r['per_seed'][str(s)]['estimate']:.3f}" for s in own)] for suite, r in sorted(suites.items())]
    header = ["suite", f"{variant}, mean over {seeds} seed{'s' if seeds > 1 else ''}",
              *(f"this model (seed {s})" for s in own)]
    return (f"Pairwise accuracy on held-out pairs [95% bootstrap interval over seeds and pairs] (n), from "
            f"`{source}`:\n\n" + markdown_table(header, rows))


def export(model_dir: Path, out: Path, metrics_path: Path | None) -> None:
    check_reward_model(str(model_dir))
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for path in sorted(model_dir.iterdir()):
            if path.name in FILES or path.suffix == ".safetensors" or path.name == "model.safetensors.index.json":
                shutil.copy2(path, tmp / path.name)
        card = (tmp / "README.md").read_text(encoding="utf-8") if (tmp / "README.md").is_file() else ""
        section = evaluation_section(read_json(metrics_path), *model_identity(model_dir), str(metrics_path)) \
            if metrics_path and metrics_path.is_file() else None
        if card and section and EVALUATION_POINTER in card:
            (tmp / "README.md").write_text(card.replace(EVALUATION_POINTER, section, 1), encoding="utf-8")


@click.command("export")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--metrics", "metrics_path", default="data/eval/metrics.json", show_default=True,
              type=click.Path(path_type=Path), help="Evaluation results whose numbers for this variant go in the card.")
@click.option("--push-to-hub", "repo_id", default=None,
              help="Also upload the folder to this Hub repo (needs a token in HF_TOKEN).")
@click.option("--private/--public", default=True, show_default=True, help="Visibility of a repo the push creates.")
@clean_errors
def main(model_dir, out, metrics_path, repo_id, private):
    """Write the trained reward model in MODEL_DIR to OUT, ready for the Hub (and push it with --push-to-hub)."""
    if repo_id and not os.environ.get("HF_TOKEN"):
        raise InputError("HF_TOKEN", None, None, "not set: --push-to-hub needs a Hub token in this variable")
    export(model_dir, out, metrics_path)
    click.echo(f"export: {model_dir} → {out}")
    if not repo_id:
        click.echo(f"  {share_hint(model_identity(model_dir)[0])}")
    if repo_id:
        from huggingface_hub import HfApi

        try:
            api = HfApi()
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(folder_path=str(out), repo_id=repo_id, commit_message=f"music-rm export of {model_dir}")
        except Exception as e:  # HTTP and network errors of the Hub client
            raise StageFailure(f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        click.echo(f"export: pushed to https://huggingface.co/{repo_id} ({commit.oid})")
