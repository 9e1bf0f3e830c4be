"""Scoring precision on the CPU: one reward model scores the same pairs in fp32 and in bf16, in one run.

    python bench/scoring_dtype.py [--model models/rm/music/seed-0] [--pairs data/fetch/test.jsonl data/contrast/test_by_k.jsonl]
                                  [--limit N] [--batch-size 8] [--max-length 2048]
    python bench/scoring_dtype.py --small   # seconds: a tiny random-init reward model on the embedded seed pairs

What `eval.cpu_dtype` decides. Prints how many verdicts flip between the two (chosen ahead in one dtype, behind in
the other), how many are a tie (equal margins to 6 decimals, records.outcome) in one dtype only, the ties in each,
the mean and largest absolute margin difference beside the spread of the fp32 margins, and the scoring time of each
with their ratio. Pair files: the one conversation schema, or any format fetch reads (detected from the first row,
e.g. HH-RLHF's transcripts); `--limit` keeps the first N pairs of each file. Defaults: the default pipeline's
held-out pairs and its music model of the first training seed (run `dvc repro` first), eval.batch_size and eval.max_length of params.yaml. The
score cache is off: both dtypes are computed here. Without a GPU only; on GPUs the stages score in bf16.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def read_pairs_any(path: str, limit: int | None) -> tuple[list[dict], int]:
    """(pairs, rows skipped) of a file in the schema or in a format fetch detects; a row that is not a valid pair
    (e.g. chosen identical to rejected) is skipped and counted."""
    from music_rm.data.conversation import SchemaError, validate_pair
    from music_rm.data.formats import detect
    from music_rm.data.sources import normalize, read_rows

    rows = read_rows(path)[:limit]
    fmt = detect(rows[0][1]) if rows else "schema"
    if fmt is None:
        raise SystemExit(f"{path}: row {rows[0][0]}: not a format fetch reads (see docs/params.md, fetch.format)")
    pairs, skipped = [], 0
    for _, raw in rows:
        try:
            pair = normalize(raw, fmt, Path(path).stem)
            validate_pair(pair)
        except SchemaError:
            skipped += 1
            continue
        pairs.append(pair)
    return pairs, skipped


def tiny_reward_model(folder: Path) -> str:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fixtures.tiny_model import make_tiny_model

    tiny = make_tiny_model(folder / "tiny")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1).save_pretrained(folder / "rm")
    AutoTokenizer.from_pretrained(tiny).save_pretrained(folder / "rm")
    return str(folder / "rm")


def score(model: str, dtype: str, pairs: list[dict], batch_size: int, max_length: int) -> tuple[list[float], float]:
    """(margins, seconds of scoring, the load left out)."""
    from music_rm.reward.model import load_reward_model

    with load_reward_model(model, devices=["cpu"], cpu_dtype=dtype, cache=False) as rm:
        start = time.perf_counter()
        margins = rm.margins(pairs, batch_size, max_length, dtype)
        return margins, time.perf_counter() - start


def main():
    import torch

    from music_rm.core import paths
    from music_rm.core.params import load_params
    from music_rm.data.sources import fetch
    from music_rm.evaluation.records import is_tie, outcome

    params = load_params(REPO / "params.yaml")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(paths.reward_model(paths.REWARD_MODELS, "music", params.train.seeds[0])))
    parser.add_argument("--pairs", nargs="+", default=["data/fetch/test.jsonl", "data/contrast/test_by_k.jsonl"])
    parser.add_argument("--limit", type=int, default=None, help="The first N pairs of each file.")
    parser.add_argument("--batch-size", type=int, default=params.eval.batch_size)
    parser.add_argument("--max-length", type=int, default=params.eval.max_length)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--small", action="store_true", help="A tiny random-init reward model, the embedded pairs.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        if args.small:
            model = tiny_reward_model(Path(work))
            train, test, _ = fetch(params.fetch.model_copy(update={"source": "embedded"}))
            pairs, skipped, args.max_length = train + test, 0, 256
        else:
            model, pairs, skipped = args.model, [], 0
            for path in args.pairs:
                read, bad = read_pairs_any(path, args.limit)
                pairs, skipped = pairs + read, skipped + bad
        fp32, fp32_s = score(model, "float32", pairs, args.batch_size, args.max_length)
        bf16, bf16_s = score(model, "bfloat16", pairs, args.batch_size, args.max_length)
    flips = sum({outcome(a), outcome(b)} == {0.0, 1.0} for a, b in zip(fp32, bf16))
    tie_once = sum(is_tie(a) != is_tie(b) for a, b in zip(fp32, bf16))
    diffs = [abs(a - b) for a, b in zip(fp32, bf16)]
    print(f"model {model if not args.small else 'tiny random-init'}; {len(pairs)} pairs ({skipped} rows skipped), "
          f"max_length {args.max_length}, batch {args.batch_size}, {torch.get_num_threads()} CPU threads")
    print(f"verdicts flipped fp32 -> bf16: {flips} of {len(pairs)} ({100 * flips / len(pairs):.1f}%); "
          f"a tie in one dtype only: {tie_once}; ties: fp32 {sum(map(is_tie, fp32))}, bf16 {sum(map(is_tie, bf16))}")
    print(f"accuracy (ties count 1/2): fp32 {statistics.fmean(map(outcome, fp32)):.4f}, "
          f"bf16 {statistics.fmean(map(outcome, bf16)):.4f}")
    print(f"|margin difference|: mean {statistics.fmean(diffs):.4f}, max {max(diffs):.4f}; "
          f"fp32 margins: standard deviation {statistics.pstdev(fp32):.4f}, "
          f"median |margin| {statistics.median(map(abs, fp32)):.4f}")
    print(f"scoring time: fp32 {fp32_s:.1f} s, bf16 {bf16_s:.1f} s; ratio bf16 / fp32: {bf16_s / fp32_s:.2f}")


if __name__ == "__main__":
    main()
