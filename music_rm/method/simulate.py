"""MUSIC trees: from one seed prompt, a chosen branch and a rejected branch, several turns each.

Chosen: the assistant answers each real user message; the user simulator reads the chosen history.
Rejected: each user message is first rewritten into a related-but-different hidden instruction; the
assistant answers the hidden one and its answer follows the real (visible) user message; the user
simulator reads the rejected history. Every generation is checked; a failed check is retried with a
new seed up to `max_retries` times, then the tree is dropped and the reason counted.
"""
import hashlib
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources

from ..core.params import SimulateParams
from ..data.conversation import prompt_hash, prompt_of, render
from ..generation.request import Request

TEMPLATES = resources.files("music_rm.method") / "templates"
log = logging.getLogger(__name__)
# the summary numbers a pipeline run carries from simulate (tracking.log_results)
HEADLINE = ("trees", "dropped")


def _template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_template(name: str, placeholder: str) -> tuple[str, str, str]:
    """(text before the placeholder, text after it, content hash) of templates/<name>.txt."""
    path = TEMPLATES / f"{name}.txt"
    text = path.read_text(encoding="utf-8").rstrip()  # the model continues the template's last line
    if text.count(placeholder) != 1:
        raise ValueError(f"{path}: must contain {placeholder} exactly once")
    prefix, suffix = text.split(placeholder)
    return prefix, suffix, _template_hash(text)


def sample_prompts(rows: list[dict], size: int | float | None, seed: int) -> list[dict]:
    """One row per distinct prompt, for `size` of the distinct prompts drawn at random with `seed`: a count,
    a fraction, or all of them (None); in file order."""
    by_prompt: dict[str, dict] = {}
    for row in rows:
        by_prompt.setdefault(prompt_hash(row["chosen"]), row)
    firsts = list(by_prompt.values())
    if size is None:
        return firsts
    count = min(len(firsts), size if isinstance(size, int) else round(size * len(firsts)))
    return [firsts[i] for i in sorted(random.Random(seed).sample(range(len(firsts)), count))]


def with_instructions(messages: list, instructions: str) -> tuple:
    """The assistant simulator's input: its instructions as a system message; a conversation's own system
    message wins. (A backend whose model has no system role folds it into the first user message.)"""
    if instructions and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": instructions}, *messages]
    return tuple(messages)


def _normalized(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


_OWN_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?(?:(?:next )?user(?: message)?|(?:different )?instruction)\s*:\s*",
                        re.IGNORECASE)
_OTHER_ROLE = re.compile(r"^\s*(assistant|conversation)\s*:", re.IGNORECASE)


def clean_line(text: str) -> str:
    """A simulator's line without a leading bullet or its own role label ("User: …" is still the user)."""
    return re.sub(r"^\s*[-*•]\s+", "", _OWN_LABEL.sub("", text, count=1)).strip()


def example_outputs(prefix: str, label: str) -> set[str]:
    """The normalized answers of a few-shot template, which a small model sometimes copies."""
    return {_normalized(line[len(label):]) for line in prefix.splitlines() if line.startswith(label)}


def check_assistant(text: str, _request) -> str | None:
    return "assistant_empty" if len(_normalized(text)) < 2 else None


def check_user(text: str, examples: set[str]) -> str | None:
    if _OTHER_ROLE.match(text):
        return "user_role_break"
    if len(_normalized(text).split()) < 2:
        return "user_empty"
    if _normalized(text) in examples:
        return "user_copied_example"
    return None


def check_rewrite(text: str, original_and_examples: tuple[str, set[str]]) -> str | None:
    original, examples = original_and_examples
    if _OTHER_ROLE.match(text):
        return "rewrite_role_break"
    if len(_normalized(text).split()) < 2:
        return "rewrite_empty"
    if _normalized(text) == _normalized(original):
        return "rewrite_same_as_original"
    if _normalized(text) in examples:
        return "rewrite_copied_example"
    return None


@dataclass
class _Growing:
    seed: dict
    split: str
    context: list
    chosen: list
    rejected: list
    pending_user: str  # the rejected branch's next visible user message
    hidden: list = field(default_factory=list)
    dropped: str | None = None


class TreeBuilder:
    """Grows MUSIC trees from seed rows through a Generator: `build([(row, split), ...])` -> tree records."""

    def __init__(self, generator, p: SimulateParams, model: dict | None = None):
        self.generator, self.p, self.model = generator, p, model or {}
        *self.user_template, user_hash = load_template("user_simulator", "{conversation}")
        *self.rewrite_template, rewrite_hash = load_template("rewriter", "{instruction}")
        self.assistant_instructions = (TEMPLATES / "assistant.txt").read_text(encoding="utf-8").strip()
        self.template_hashes = {"assistant": _template_hash(self.assistant_instructions),
                                "user_simulator": user_hash, "rewriter": rewrite_hash}
        self.user_examples = example_outputs(self.user_template[0], "Next user message:")
        self.rewrite_examples = example_outputs(self.rewrite_template[0], "Different instruction:")
        self.dropped = Counter()
        self.retries = Counter()

    def assistant_request(self, history: list, sampling=None, sample: int = 0) -> Request:
        """The assistant simulator's next message; `sampling` other than simulate.assistant (Best-of-N's policy)."""
        return Request(with_instructions(history, self.assistant_instructions),
                       sampling or self.p.assistant, sample=sample)

    def user_request(self, history: list) -> Request:
        prefix, suffix = self.user_template
        conversation = render(history[-self.p.context_messages:], max_chars=self.p.context_chars)
        return Request(conversation + suffix, self.p.user, prefix=prefix)

    def _rewrite_request(self, instruction: str) -> Request:
        prefix, suffix = self.rewrite_template
        return Request(" ".join(instruction.split()) + suffix, self.p.rewriter, prefix=prefix)

    def _run(self, jobs: list, turn: int, phase: str, desc: str) -> None:
        """jobs: (tree, request, check, extra, on_success). Generate, check, retry failures, drop the rest."""
        def check(i, text):
            tree, request, check_text, extra, _ = jobs[i]
            if request.raw:
                text = clean_line(text)
            return text, check_text(text, extra)

        texts, reasons, retried = self.generator.generate_checked(
            [j[1] for j in jobs], check, (self.p.seed, turn, phase), self.p.max_retries, desc)
        self.retries.update(retried)
        for (tree, _, _, _, on_success), text, reason in zip(jobs, texts, reasons):
            if reason is None:
                on_success(text)
            else:
                tree.dropped = reason

    def build(self, seeds: list[tuple[dict, str]]) -> list[dict]:
        """seeds: (preference row, split). One tree per distinct prompt, in seed order."""
        trees, seen = [], set()
        for row, split in seeds:
            key = prompt_hash(row["chosen"])
            if key in seen:
                continue
            seen.add(key)
            prompt = prompt_of(row["chosen"])
            trees.append(_Growing(seed=row, split=split, context=prompt[:-1], chosen=list(prompt),
                                  rejected=list(prompt[:-1]), pending_user=prompt[-1]["content"]))

        for turn in range(1, self.p.turns + 1):
            alive = [t for t in trees if not t.dropped]
            log.info("turn %d of %d: %d trees growing, %d dropped", turn, self.p.turns, len(alive), len(trees) - len(alive))
            answers, rewrites = {}, {}
            self._run(
                [(t, self.assistant_request(t.chosen), check_assistant, None,
                  lambda text, t=t: answers.__setitem__(id(t), text)) for t in alive]
                + [(t, self._rewrite_request(t.pending_user), check_rewrite, (t.pending_user, self.rewrite_examples),
                    lambda text, t=t: rewrites.__setitem__(id(t), text)) for t in alive],
                turn, "answer+rewrite", f"turn {turn}: chosen answers + rewrites")
            alive = [t for t in alive if not t.dropped]
            hidden_answers = {}
            self._run(
                [(t, self.assistant_request(t.rejected + [{"role": "user", "content": rewrites[id(t)]}]),
                  check_assistant, None, lambda text, t=t: hidden_answers.__setitem__(id(t), text)) for t in alive],
                turn, "hidden answer", f"turn {turn}: rejected answers")
            for t in alive:
                if t.dropped:
                    continue
                t.chosen.append({"role": "assistant", "content": answers[id(t)]})
                t.rejected += [{"role": "user", "content": t.pending_user},
                               {"role": "assistant", "content": hidden_answers[id(t)]}]
                t.hidden.append({"turn": turn, "original": t.pending_user, "rewritten": rewrites[id(t)]})
            if turn == self.p.turns:
                break
            alive = [t for t in alive if not t.dropped]
            next_chosen = {}
            self._run(
                [(t, self.user_request(t.chosen), check_user, self.user_examples,
                  lambda text, t=t: next_chosen.__setitem__(id(t), text)) for t in alive]
                + [(t, self.user_request(t.rejected), check_user, self.user_examples,
                    lambda text, t=t: setattr(t, "pending_user", text)) for t in alive],
                turn, "next user", f"turn {turn}: next user messages")
            for t in alive:
                if not t.dropped:
                    t.chosen.append({"role": "user", "content": next_chosen[id(t)]})

        self.dropped = Counter(t.dropped for t in trees if t.dropped)
        return [self._record(t) for t in trees if not t.dropped]

    def _record(self, t: _Growing) -> dict:
        return {
            "id": prompt_hash(t.seed["chosen"])[:16],
            "seed_id": t.seed["id"],
            "source": t.seed["source"],
            "split": t.split,
            "context": t.context,
            "chosen": t.chosen,
            "rejected": t.rejected,
            "hidden": t.hidden,
            "provenance": {"model": self.model, "templates": self.template_hashes, "seed": self.p.seed,
                           "sampling": {role: getattr(self.p, role).model_dump() for role in ("assistant", "user", "rewriter")}},
        }


STOP_WORDS = frozenset("""a an the and or but if then so of to in on at by for with from about as into is are was were be
been being do does did have has had i you he she it we they me him her us them my your his its our their this that
these those what which who whom how why when where can could would should will shall may might must not no yes
please me some any all""".split())


def content_words(text: str) -> set[str]:
    """Lower-cased words that are not stop words, a final plural "s" dropped (eggs and egg count as one)."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _normalized(text).split() if w not in STOP_WORDS}


def relatedness(original: str, rewritten: str) -> float:
    """How related a hidden instruction is to the user message it replaced, lexically: the Jaccard overlap of
    their content words (stop words left out); 0 when they share none, 1 when they use the same ones."""
    a, b = content_words(original), content_words(rewritten)
    return round(len(a & b) / len(a | b), 6) if a | b else 0.0


def relatedness_stats(trees: list[dict]) -> dict:
    """Summary of the relatedness of every hidden instruction of every tree."""
    values = sorted(relatedness(h["original"], h["rewritten"]) for t in trees for h in t["hidden"])
    if not values:
        return {"hidden_instructions": 0}
    bins = {"0": sum(v == 0 for v in values), "0-0.25": sum(0 < v <= 0.25 for v in values),
            "0.25-0.5": sum(0.25 < v <= 0.5 for v in values), "0.5-0.75": sum(0.5 < v <= 0.75 for v in values),
            "0.75-1": sum(v > 0.75 for v in values)}
    return {"hidden_instructions": len(values), "mean": round(sum(values) / len(values), 6),
            "median": values[len(values) // 2], "share_unrelated": round(sum(v == 0 for v in values) / len(values), 6),
            "share_at_least_half": round(sum(v >= 0.5 for v in values) / len(values), 6), "bins": bins}


def message_stats(trees: list[dict], count_tokens) -> dict:
    """Mean tokens (as `count_tokens` counts them) per simulated message, by branch and role."""
    stats = {}
    for branch in ("chosen", "rejected"):
        for role in ("user", "assistant"):
            lengths = [count_tokens(m["content"]) for t in trees for m in t[branch][len(t["context"]):]
                       if m["role"] == role]
            stats[f"{branch}_{role}_mean_tokens"] = round(sum(lengths) / len(lengths), 1) if lengths else 0.0
    return stats


def sample_markdown(trees: list[dict], shown: int = 3) -> str:
    parts = ["# Sample of simulated MUSIC trees\n"]
    for t in trees[:shown]:
        parts.append(f"## Tree {t['id']} (seed pair {t['seed_id']}, {t['split']})\n")
        for branch in ("chosen", "rejected"):
            parts.append(f"### {branch}\n")
            for i, m in enumerate(t[branch]):
                marker = " (shared context)" if i < len(t["context"]) else ""
                parts.append(f"- **{m['role']}**{marker}: {m['content']}")
            parts.append("")
        parts.append("### hidden instructions (rejected branch only)\n")
        parts += [f"- turn {h['turn']}: {h['original']!r} → answered as {h['rewritten']!r}" for h in t["hidden"]]
        parts.append("")
    return "\n".join(parts) + "\n"
