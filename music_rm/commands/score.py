"""Score conversations with a trained reward model.

    music-rm score models/rm/music/seed-0 pairs.jsonl --out scores.jsonl

The input is any file fetch reads (.jsonl, .json, .parquet, each optionally .gz). Each row holds either
`messages` (one conversation, a list of {"role", "content"}) or a preference pair in any format fetch reads
(data/formats.py; detected from the file's first pair). Each output row keeps the input's `id` (or its row
number) and adds `reward`, or `reward_chosen`, `reward_rejected` and `margin`. Without --out, rows go to
stdout. A folder that is not a trained reward model is refused before anything is written.

A conversation over --max-length tokens is shortened by the rule eval follows (docs/evaluation.md); the default is
the length the model was trained with (its reward_model.json), and the closing line on stderr says how many were.
--batch-size and --max-length take what eval.batch_size and eval.max_length take.
"""
import json
import sys
from pathlib import Path

import click

from pydantic import TypeAdapter, ValidationError

from ..core.cli import clean_errors
from ..core.errors import InputError, ParamsError
from ..core.params import EvalParams
from ..core.io import write_jsonl
from ..data.conversation import SchemaError, validate_conversation
from ..data.formats import convert, drop_nulls
from ..data.sources import read_rows, resolve_format


def read_scoring_rows(path) -> list[tuple[int, dict]]:
    """(row number, {"messages"} or {"chosen", "rejected"}, with the row's id if it has one), each checked."""
    raw_rows = read_rows(path)
    fmt = resolve_format("auto", [(n, r) for n, r in raw_rows if not (isinstance(r, dict) and "messages" in r)], path)
    rows = []
    for row_no, raw in raw_rows:
        if isinstance(raw, InputError):
            raise raw
        try:
            if not isinstance(raw, dict):
                raise SchemaError("row", f"expected an object, got {type(raw).__name__}")
            raw = drop_nulls(raw)
            row = {"messages": raw["messages"]} if "messages" in raw else convert(raw, fmt)
            for field, messages in row.items():
                validate_conversation(messages, field)
        except SchemaError as e:
            raise InputError(path, row_no, e.field, e.reason) from None
        rows.append((row_no, {**row, **({"id": raw["id"]} if "id" in raw else {})}))
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


def as_eval_takes(value, option: str, field: str):
    """`value`, if eval.<field> would take it; else a ParamsError naming the option."""
    try:
        return TypeAdapter(EvalParams.model_fields[field].rebuild_annotation()).validate_python(value, strict=True)
    except ValidationError as e:
        raise ParamsError(f"{option} {value}: {e.errors()[0]['msg'].removeprefix('Input ')} (as eval.{field})") from None


@click.command("score")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output .jsonl (default: stdout).")
@click.option("--batch-size", default=8, show_default=True, help="Conversations per forward pass.")
@click.option("--max-length", type=int, default=None,
              help="A longer conversation loses its oldest whole exchanges (eval's rule); default: the length the "
                   "model was trained with (its reward_model.json), else its context length.")
@clean_errors
def main(model_dir, input_path, out, batch_size, max_length):
    """Score the conversations or pairs of INPUT_PATH with the reward model in MODEL_DIR."""
    from ..reward.model import load_reward_model

    batch_size = as_eval_takes(batch_size, "--batch-size", "batch_size")
    if max_length is not None:
        max_length = as_eval_takes(max_length, "--max-length", "max_length")
    rows = read_scoring_rows(input_path)
    with load_reward_model(str(model_dir)) as rm:
        if max_length is None:
            context = getattr(rm.model.config, "max_position_embeddings", None)
            max_length, source = ((rm.trained_length, "the model was trained with") if rm.trained_length else
                                  (context, "of the model's context: it has no reward_model.json"))
        else:
            source = "asked for"
        rm.check_max_length(max_length, "--max-length")
        scored = score_rows(rm, rows, batch_size, max_length)
        truncated, conversations = rm.truncated, sum(1 if "messages" in row else 2 for _, row in rows)
    if out:
        write_jsonl(out, scored)
    else:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in scored))
    limit = (f"{truncated} of {conversations} conversations were over {max_length} tokens (the length {source}) and "
             "were shortened by eval's length rule" if max_length else "no length limit")
    click.echo(f"score: {len(scored)} rows → {out or 'stdout'}; {limit}", err=True)

