"""Pairwise accuracy of reward models on held-out preference pairs, and the comparison table."""
from .reward import load_reward_model, score


def pair_accuracy(model, tokenizer, pairs: list[dict], batch_size: int, desc: str) -> dict:
    """Share of pairs whose chosen conversation scores strictly higher than the rejected one."""
    if not pairs:
        return {"accuracy": None, "n": 0, "mean_margin": None}
    scores = score(model, tokenizer, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], batch_size, desc)
    margins = [c - r for c, r in zip(scores[: len(pairs)], scores[len(pairs):])]
    return {"accuracy": round(sum(m > 0 for m in margins) / len(pairs), 6), "n": len(pairs),
            "mean_margin": round(sum(margins) / len(pairs), 6)}


def evaluate_variants(model_dirs: dict[str, str], suites: dict[str, list[dict]], batch_size: int) -> dict:
    """{variant: {suite: {accuracy, n, mean_margin}}}"""
    results = {}
    for variant, model_dir in model_dirs.items():
        model, tokenizer = load_reward_model(model_dir)
        results[variant] = {suite: pair_accuracy(model, tokenizer, pairs, batch_size, f"{variant}: {suite}")
                            for suite, pairs in suites.items()}
    return results


def comparison_table(results: dict) -> str:
    suites = list(next(iter(results.values())).keys())
    header = "| variant | " + " | ".join(f"{s} acc (n)" for s in suites) + " |"
    lines = [header, "|" + "---|" * (len(suites) + 1)]
    for variant, by_suite in results.items():
        cells = []
        for s in suites:
            r = by_suite[s]
            cells.append("n/a (0)" if r["accuracy"] is None else f"{r['accuracy']:.3f} ({r['n']})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
