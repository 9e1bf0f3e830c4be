"""Multi-turn Best-of-N (paper Fig. 2): does a reward model pick better answers, turn after turn?

From each seed prompt a policy samples N candidate answers per assistant turn, a reward model keeps the
one it scores highest, and the user simulator (simulate's) writes the next user message; for `turns`
turns. Beside them a greedy rollout: one answer per turn at temperature 0, no reward model. The judge
(the judge stage's backend and template) compares whole conversations in both orders: each variant's
BoN against greedy, and each other variant's BoN against the reference variant's, at every N. Both
orders must agree for a win or a loss; anything else (position bias, an unparsed answer) is a tie.
Win rate = (wins + ties / 2) / comparisons, with a bootstrap 95% interval over seed prompts (estimates.py, from the
records);
the tie rule of every suite (records.outcome). Picking among the candidates, rewards equal to 6 decimals are a tie,
which goes to the first candidate sampled.

Length references: beside the reward models, two pickers that keep the longest and the shortest candidate
(`longest_answer`, `shortest_answer`), judged against greedy like them: a reward model that only rewards length
wins as often as one of them.

Records (records.py), one row per (seed prompt, comparison): suite `best_of_n/<set>/vs_greedy@<N>` or
`best_of_n/<set>/vs_<reference>@<N>`, item and cluster the prompt id, variant the reward model whose Best-of-N is
judged (seed: the one scored), margin the judge's verdict for it: +1 a win, 0 a tie, -1 a loss (a comparison whose
judge prompt was too long has no row), length the judged policy's assistant characters minus its opponent's.
"""
from dataclasses import dataclass, field

import numpy as np

from ..core.params import BestOfNParams
from ..data.conversation import length_difference
from ..generation.generator import TOO_LONG
from ..generation.request import derive_seed
from ..method.simulate import check_assistant, check_user, clean_line
from .judge import judge_pairs
from .estimates import accuracy, arm_of, by_suite
from .plots import pyplot, save_png
from .records import Record, rounded
from .report import cell, markdown_table


# the length references: pickers that reward a candidate answer by its characters (or their negative)
LENGTH_PICKERS = {"longest_answer": 1, "shortest_answer": -1}


def pickers(p: BestOfNParams) -> list[str]:
    """What picks among the candidates: each reward-model variant, then the length references."""
    return [*p.variants, *LENGTH_PICKERS]


@dataclass
class Rollout:
    prompt_id: str
    variant: str | None  # None: the greedy policy
    n: int
    messages: list
    picked: list = field(default_factory=list)  # per assistant turn: {"turn", "index", "rewards"} (greedy: no rewards)
    failed: str | None = None

    @property
    def name(self) -> str:
        return "greedy" if self.variant is None else f"{self.variant}@{self.n}"


def pick(rewards: list[float], candidates: list[str]) -> int | None:
    """Index of the best-rewarded usable candidate (the first on a tie: rewards equal to 6 decimals), None when none
    is usable."""
    usable = [i for i, c in enumerate(candidates) if check_assistant(c, None) is None]
    return max(usable, key=lambda i: (rounded(rewards[i]), -i)) if usable else None


def roll_out(generator, builder, reward_fns: dict, prompts, p: BestOfNParams, user_retries: int) -> list[Rollout]:
    """Every rollout: greedy and <picker>@<N> for each prompt (`pickers`). `builder` is simulate's TreeBuilder (its
    assistant and user requests); `reward_fns[variant](conversations)` gives one reward each."""
    reward_fns = {**reward_fns, **{name: (lambda convs, sign=sign: [sign * len(c[-1]["content"]) for c in convs])
                                   for name, sign in LENGTH_PICKERS.items()}}
    rollouts = [Rollout(pid, variant, n, list(prompt)) for pid, prompt in prompts
                for variant, n in [(None, 1)] + [(v, n) for n in p.n for v in pickers(p)]]
    greedy = p.policy.model_copy(update={"temperature": 0.0})
    for turn in range(1, p.turns + 1):
        alive = [r for r in rollouts if not r.failed]
        requests = [request for r in alive for request in (
            [builder.assistant_request(r.messages, greedy)] if r.variant is None else
            [builder.assistant_request(r.messages, p.policy, sample=k) for k in range(1, r.n + 1)])]
        texts = generator.generate(requests, seed=derive_seed(p.seed, "best_of_n", turn), desc=f"turn {turn}: answers")
        candidates = _per_rollout(texts, alive)
        for r in alive:
            if None in candidates[id(r)]:  # the conversation no longer fits the policy's context
                r.failed = TOO_LONG
        alive = [r for r in alive if not r.failed]
        rewards = {id(r): [0.0] for r in alive if r.variant is None}
        for variant in pickers(p):
            group = [r for r in alive if r.variant == variant]
            rewards.update(_per_rollout(reward_fns[variant]([r.messages + [{"role": "assistant", "content": c}]
                                                             for r in group for c in candidates[id(r)]]), group))
        for r in alive:
            index = pick(rewards[id(r)], candidates[id(r)])
            if index is None:
                r.failed = "assistant_empty"
                continue
            r.messages.append({"role": "assistant", "content": candidates[id(r)][index]})
            r.picked.append({"turn": turn, "index": index, "rewards": [round(x, 6) for x in rewards[id(r)]]}
                            if r.variant else {"turn": turn, "index": 0})
        if turn < p.turns:
            _next_user_messages([r for r in alive if not r.failed], generator, builder, p.seed, turn, user_retries)
    return rollouts


def _per_rollout(flat: list, rollouts: list[Rollout]) -> dict:
    """{id(rollout): its n items} of a flat list holding each rollout's n items in turn."""
    out, start = {}, 0
    for r in rollouts:
        out[id(r)] = flat[start:start + r.n]
        start += r.n
    return out


def _next_user_messages(rollouts, generator, builder, seed: int, turn: int, retries: int) -> None:
    """Append the user simulator's next message to each rollout; retried with new seeds, then the rollout fails."""
    def check(_, text):
        text = clean_line(text)
        return text, check_user(text, builder.user_examples)

    texts, reasons, _ = generator.generate_checked([builder.user_request(r.messages) for r in rollouts], check,
                                                   (seed, "best_of_n", turn, "user"), retries, f"turn {turn}: users")
    for r, text, reason in zip(rollouts, texts, reasons):
        if reason is None:
            r.messages.append({"role": "user", "content": text})
        else:
            r.failed = reason


def comparisons(p: BestOfNParams) -> list[tuple[str, str, str]]:
    """(name, policy A, policy B) at every N: each picker vs greedy, each other variant vs the reference."""
    out = []
    for n in p.n:
        out += [(f"{v}_vs_greedy@{n}", f"{v}@{n}", "greedy") for v in pickers(p)]
        out += [(f"{v}_vs_{p.reference}@{n}", f"{v}@{n}", f"{p.reference}@{n}") for v in p.variants if v != p.reference]
    return out


def judge_rollouts(generator, rollouts: list[Rollout], p: BestOfNParams, judge_sampling, judge_seed: int) -> list[dict]:
    """One judged comparison per (prompt, comparison) whose two rollouts both finished."""
    by_key = {(r.prompt_id, r.name): r for r in rollouts}
    pairs = []
    for prompt_id in dict.fromkeys(r.prompt_id for r in rollouts):
        if any(by_key[(prompt_id, name)].failed for c in comparisons(p) for name in c[1:]):
            continue  # paired comparisons only: a prompt counts when all of its rollouts finished
        for name, a, b in comparisons(p):
            pairs.append({"id": f"{prompt_id}:{name}", "prompt_id": prompt_id, "comparison": name,
                          "chosen": by_key[(prompt_id, a)].messages, "rejected": by_key[(prompt_id, b)].messages})
    verdicts = judge_pairs(generator, pairs, judge_sampling, judge_seed)
    outcome = {"chosen": 1.0, "rejected": 0.0}
    return [{"id": pair["id"], "prompt_id": pair["prompt_id"], "comparison": pair["comparison"],
             "verdict": {"chosen": "win", "rejected": "loss", TOO_LONG: TOO_LONG}.get(v["verdict"], "tie"),
             "judge": v["verdict"], "score": outcome.get(v["verdict"], 0.5), "answers": v["answers"],
             "length": length_difference(pair["chosen"], pair["rejected"])}
            for pair, v in zip(pairs, verdicts)]


MARGIN = {"win": 1.0, "tie": 0.0, "loss": -1.0}


def records(verdicts: list[dict], p: BestOfNParams, set_name: str, seed: int) -> list[Record]:
    """Per seed prompt and comparison, the judge's verdict for the variant's BoN (a too-long judge prompt: none)."""
    policies = {name: (a, b) for name, a, b in comparisons(p)}
    rows = []
    for v in verdicts:
        if v["verdict"] == TOO_LONG:
            continue
        suite, variant = suite_of(*policies[v["comparison"]])
        rows.append(Record.of(f"best_of_n/{set_name}/{suite}", v["prompt_id"], variant,
                              0 if variant in LENGTH_PICKERS else seed, MARGIN[v["verdict"]], length=v["length"]))
    return rows


def suite_of(a: str, b: str) -> tuple[str, str]:
    """(suite after `best_of_n/<set>/`, variant) of a comparison of policy `a` (`<variant>@<N>`) with `b`: the
    suite `vs_greedy@<N>` or `vs_<reference>@<N>` holds each variant's verdicts against that opponent."""
    variant, n = a.rsplit("@", 1)
    return f"vs_greedy@{n}" if b == "greedy" else f"vs_{b}", variant


def win_rates(records: list[Record], p: BestOfNParams) -> dict:
    """{comparison@N: {estimate, ci_low, ci_high, n, …, wins, ties, losses}}: the win rate (estimates.py)."""
    suites = {suite.rsplit("/", 1)[1]: rows for suite, rows in by_suite(records).items()}
    out = {}
    for name, a, b in comparisons(p):
        suite, variant = suite_of(a, b)
        arm = arm_of(suites.get(suite, []), variant)
        out[name] = {**accuracy(arm, p.bootstrap_resamples, p.seed).as_dict(),
                     "wins": int((arm.margins > 0).sum()), "losses": int((arm.margins < 0).sum())}
    return out


def headline(metrics: dict) -> dict[str, float]:
    """The numbers a pipeline run carries from this suite (tracking.carry): every win rate."""
    return {f"{name}.win_rate": r["estimate"] for name, r in metrics["win_rates"].items() if r["estimate"] is not None}


def heatmap_rows(rates: dict, p: BestOfNParams) -> dict[str, list]:
    """{comparison: [win rate at each N]}: the heatmap's rows, columns in p.n order."""
    rows = {}
    for name in dict.fromkeys(c.rsplit("@", 1)[0] for c, _, _ in comparisons(p)):
        rows[name] = [rates[f"{name}@{n}"]["estimate"] for n in p.n]
    return rows


def heatmap_plot(rates: dict, p: BestOfNParams, path) -> None:
    """Win rate of each comparison (rows) at each N (columns), annotated with the 95% interval (PNG)."""
    plt = pyplot()
    rows = heatmap_rows(rates, p)
    values = np.array([[np.nan if x is None else x for x in row] for row in rows.values()], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 * len(p.n) + 2.5, 0.7 * len(rows) + 1.4), dpi=100)
    image = ax.imshow(values, cmap="RdBu", vmin=0, vmax=1, aspect="auto")
    for i, name in enumerate(rows):
        for j, n in enumerate(p.n):
            r = rates[f"{name}@{n}"]
            text = "n/a" if r["estimate"] is None else f"{r['estimate']:.2f}\n[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(p.n)), [f"N={n}" for n in p.n])
    ax.set_yticks(range(len(rows)), [name.replace("_vs_", " vs ") for name in rows])
    ax.set_title("Best-of-N win rate (judge, ties = ½)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    save_png(fig, path)


def table(rates: dict, p: BestOfNParams) -> str:
    """Markdown: one row per comparison, win rate [95% CI] (wins/ties/losses) per N."""
    rows = []
    for name in heatmap_rows(rates, p):
        rows.append([name.replace("_vs_", " vs "), *(
            cell(r["estimate"], r["ci_low"], r["ci_high"], f"{r['wins']}/{r['ties']}/{r['losses']}"
                 if r["estimate"] is not None else 0)
            for r in (rates[f"{name}@{n}"] for n in p.n))])
    return markdown_table(["comparison", *(f"N={n}" for n in p.n)], rows)
