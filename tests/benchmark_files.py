"""Small files in the exact upstream schemas of RewardBench 2, RM-Bench and RMB, written at test time (no benchmark
text is shipped: every answer here is made up), for the tests and the rehearsal profile:

    python -m tests.benchmark_files ../benchmarks     # what profiles/paper-rehearsal.yaml reads

- reward-bench-2/data/test-00000-of-00001.parquet: a dataset folder `datasets` loads as the Hub's (split test), the
  columns of allenai/reward-bench-2's card; two rows of each best-of-4 subset and two Ties prompts (ref and tied rows).
- rm-bench/total_dataset.json: THU-KEG/RM-Bench's rows (id, prompt, 3 chosen and 3 rejected answers from concise to
  markdown, domain), one of each of its five domains.
- RMB_dataset/{Pairwise_set,BoN_set}/<goal>/…/<scenario>.json: Zhou-Zoey/RMB-Reward-Model-Benchmark's files, with
  multi-turn contexts.
"""
import json
import sys
from pathlib import Path

WORDS = ("The answer follows from the question's own terms", "Each step checks the one before it",
         "A short example makes the point plain", "The result holds for every case asked about")


def answer(seed: int, sentences: int, right: bool) -> str:
    """A made-up answer of `sentences` sentences; a wrong one says so."""
    text = " ".join(f"{WORDS[(seed + k) % len(WORDS)]} ({seed}.{k})." for k in range(sentences))
    return text if right else f"{text} But it answers another question."


def reward_bench_2_rows() -> list[dict]:
    rows = []
    for n, subset in enumerate(["Factuality", "Precise IF", "Math", "Safety", "Focus"] * 2):
        chosen = [answer(n, 1 + n % 3, True)]
        rejected = [answer(n + k, 1 + (n + k) % 4, False) for k in range(1, 4)]
        rows.append({"id": str(n), "prompt": f"Question {n} on {subset.lower()}?", "chosen": chosen,
                     "rejected": rejected, "num_correct": 1, "num_incorrect": 3, "total_completions": 4,
                     "models": ["model-a"] * 4, "subset": subset,
                     "additional_metadata": {"category": subset.lower(), "subcategory": None}})
    for prompt in (1, 2):
        for kind, right in (("ref", 1), ("tied", 3)):
            chosen = [answer(prompt * 10 + k, 1 + k % 2, True) for k in range(right)]
            rejected = [answer(prompt * 20 + k, 1 + k % 3, False) for k in range(3)]
            rows.append({"id": f"{kind}:{prompt}", "prompt": f"Name one of several colours ({kind} {prompt}).",
                         "chosen": chosen, "rejected": rejected, "num_correct": right, "num_incorrect": 3,
                         "total_completions": right + 3, "models": ["model-a"] * (right + 3), "subset": "Ties",
                         "additional_metadata": {"category": "ties", "subcategory": None}})
    return rows


def rm_bench_rows() -> list[dict]:
    def styled(n, right):
        concise = answer(n, 1, right)
        return [concise, answer(n, 3, right), "## Answer\n\n- " + answer(n, 3, right).replace(". ", ".\n- ")]

    return [{"id": n, "prompt": f"Explain point {n} of the {domain} task.", "chosen": styled(n, True),
             "rejected": styled(n + 1, False), "domain": domain}
            for n, domain in enumerate(["chat", "code", "math", "safety-refuse", "safety-response"])]


def rmb_files() -> dict[str, list[dict]]:
    """{path under RMB_dataset: rows}: pairwise and Best-of-N rows of both goals, single- and multi-turn."""
    def context(n, turns):
        out = []
        for t in range(turns):
            out += [{"role": "user", "content": f"Request {n}, turn {t + 1}?", "language": "English"}]
            if t + 1 < turns:
                out += [{"role": "assistant", "content": answer(n + t, 1, True), "language": "English"}]
        return out

    files = {}
    for g, (goal, scenario) in enumerate((("Helpfulness", "Chat/Casual Conversation"), ("Harmlessness", "S1"))):
        path = f"{goal}/{scenario}"
        files[f"Pairwise_set/{path}.json"] = [
            {"pair_uid": str(100 + 10 * g + n), "conversation_input": context(n, 1 + n % 2),
             "chosen": {"llm_name": "model-a", "answer": answer(n, 1 + n % 3, True)},
             "reject": {"llm_name": "model-b", "answer": answer(n + 1, 1 + (n + 1) % 3, False)},
             "category_path": f"Pairwise_set/{path}"} for n in range(3)]
        files[f"BoN_set/{path}.json"] = [
            {"conversation_input": context(n, 1 + n % 2),
             "bon_best": {"llm_name": "model-a", "answer": answer(n, 2, True)},
             "loser_list": [{"llm_name": f"model-{k}", "answer": answer(n + k, k, False)} for k in range(1, 3 + n % 2)],
             "bon_uid": str(200 + 10 * g + n), "category_path": f"BoN_set/{path}"} for n in range(3)]
    return files


def write_json(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return path


def write_all(folder: Path) -> dict[str, Path]:
    """The three benchmarks' files under `folder`; {format: the path a source names}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rb2 = folder / "reward-bench-2"
    (rb2 / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(reward_bench_2_rows()), rb2 / "data" / "test-00000-of-00001.parquet")
    rm = write_json(folder / "rm-bench" / "total_dataset.json", rm_bench_rows()).parent
    for name, rows in rmb_files().items():
        write_json(folder / "RMB_dataset" / name, rows)
    return {"reward_bench_2": rb2, "rm_bench": rm, "rmb": folder / "RMB_dataset"}


if __name__ == "__main__":
    for fmt, path in write_all(Path(sys.argv[1])).items():
        print(f"{fmt}: {path}")
