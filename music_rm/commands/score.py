"""Score conversations with a trained reward model.

    music-rm score models/rm/music pairs.jsonl --out scores.jsonl

Each input row holds either `messages` (one conversation) or `chosen` and `rejected` (a preference
pair), as lists of {"role", "content"}. Each output row keeps the input's `id` (or its row number) and
adds `reward`, or `reward_chosen`, `reward_rejected` and `margin`. Without --out, rows go to stdout.
"""
import json
import sys
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.errors import InputError
from ..core.io import iter_jsonl, write_jsonl
from ..data.conversation import SchemaError, validate_conversation


def read_scoring_rows(path) -> list[tuple[int, dict]]:
    rows = []
    for row_no, row in iter_jsonl(path):
        if isinstance(row, InputError):
            raise row
        fields = ["messages"] if "messages" in row else ["chosen", "rejected"]
        try:
            for field in fields:
                if field not in row:
                    raise SchemaError(field, "missing (a row needs `messages`, or `chosen` and `rejected`)")
                validate_conversation(row[field], field)
        except SchemaError as e:
            raise InputError(path, row_no, e.field, e.reason) from None
        rows.append((row_no, row))
    if not rows:
        raise InputError(path, None, None, "empty file: no rows")
    return rows


def score_rows(rm, rows: list[tuple[int, dict]], batch_size: int, max_length: int | None) -> list[dict]:
    conversations, slots = [], []
    for _, row in rows:
        for field in (["messages"] if "messages" in row else ["chosen", "rejected"]):
            slots.append(len(conversations))
            conversations.append(row[field])
    rewards = iter(rm.score(conversations, batch_size, max_length))
    out = []
    for row_no, row in rows:
        key = {"id": row.get("id", row_no)}
        if "messages" in row:
            out.append({**key, "reward": next(rewards)})
        else:
            chosen, rejected = next(rewards), next(rewards)
            out.append({**key, "reward_chosen": chosen, "reward_rejected": rejected, "margin": chosen - rejected})
    return out


@click.command("score")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output .jsonl (default: stdout).")
@click.option("--batch-size", default=8, show_default=True, help="Conversations per forward pass.")
@click.option("--max-length", type=int, default=None, help="Keep the last N tokens of longer conversations.")
@clean_errors
def main(model_dir, input_path, out, batch_size, max_length):
    """Score the conversations or pairs of INPUT_PATH with the reward model in MODEL_DIR."""
    from ..reward.model import load_reward_model

    rows = read_scoring_rows(input_path)
    with load_reward_model(str(model_dir)) as rm:
        scored = score_rows(rm, rows, batch_size, max_length)
    if out:
        write_jsonl(out, scored)
        click.echo(f"score: {len(scored)} rows → {out}", err=True)
    else:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in scored))

