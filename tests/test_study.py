"""A study's results page (music-rm results) from real DVC experiments, and the relatedness statistics."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from music_rm.evaluation.stats import seeded_bootstrap
from music_rm.evaluation.study.collect import checkout_roots, commands_of, experiment_revs, read_study
from music_rm.method.simulate import relatedness, relatedness_stats

# The stage of the toy study: what the real stages write, in their real formats (records through records.py, the
# environment through core/environment.py): held-out records for 3 variants x 4 seeds and a reference, MT-Bench
# records of one seed with votes clustered by question, "pairs seen" for all but one model, summaries. Margins
# depend on K and seed, so each experiment and seed has its own numbers; some margins are ties.
WRITE_STAGE = """
import json, pathlib, random, yaml
from music_rm.core.environment import environment
from music_rm.evaluation.records import Record, write_records
p = yaml.safe_load(open("params.yaml"))
k, seeds = p["contrast"]["turns"], p["train"]["seeds"]
rng = random.Random(k)
edge = {"baseline": 0.0, "volume_matched": 0.1, "music": 0.3}
held = []
for suite, n in (("original", 30), ("music_k1", 20), ("music_k2", 20)):
    for i in range(n):
        for v in edge:
            for s in seeds:
                margin = 0.0 if (i + s) % 9 == 0 else rng.gauss(edge[v] * (suite != "original") + 0.1 * s, 1)
                held.append({"suite": suite, "item": f"{suite}-{i}", "variant": v, "seed": s, "margin": margin})
        held.append({"suite": suite, "item": f"{suite}-{i}", "variant": "longer_answer", "seed": 0,
                     "margin": rng.choice([-40, 0, 25, 60])})
votes = []
for turn in ("mt_bench/shared/turn1", "mt_bench/shared/turn2"):
    for q in range(12):
        for vote in range(3):  # three votes of one question and model pair: one cluster
            item, cluster = f"{turn}-q{q}-v{vote}", f"q{q}-gpt-4:claude-v1"
            for v in edge:
                votes.append({"suite": turn, "item": item, "cluster": cluster, "variant": v, "seed": seeds[0],
                              "margin": rng.gauss(edge[v], 1) if vote == 0 else 0.5 - (q % 2)})
            votes.append({"suite": turn, "item": item, "cluster": cluster, "variant": "gpt4", "seed": 0,
                          "margin": rng.choice([-1, 0, 1])})
            votes.append({"suite": turn, "item": item, "cluster": cluster, "variant": "longer_answer", "seed": 0,
                          "margin": rng.choice([-300, 120])})
write_records("data/eval/records.csv", [Record.of(**r) for r in held])
write_records("data/eval/mt_bench/shared/records.csv", [Record.of(**r) for r in votes])
for v in edge:
    for s in seeds:
        if (v, s) != ("baseline", 3):
            path = pathlib.Path(f"data/train/{v}/seed-{s}/metrics.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"pairs_seen": 6 + 3 * k * (v != "baseline")}))
for path in ("data/eval", "data/train/music/seed-0", "data/train/music/seed-1"):
    pathlib.Path(path, "environment.json").write_text(json.dumps(environment(), indent=2, sort_keys=True))
files = {
    "data/fetch/summary.json": {"rows_read": 10, "rows_kept": 9, "skipped": 1, "skipped_by_reason": {"empty": 1},
                                "origin": "hh.jsonl", "train": 6, "test": 3, "multi_turn": 2},
    "data/simulate/summary.json": {"trees": 4, "trees_train": 3, "trees_test": 1, "seed_prompts": 4, "dropped": 0,
                                   "dropped_by_reason": {}, "relatedness": {"hidden_instructions": 2, "mean": 0.5,
                                   "median": 0.5, "share_unrelated": 0.0, "share_at_least_half": 0.5, "bins": {}}},
    "data/contrast/summary.json": {"pairs_train": 3 * k, "pairs_test": k},
}
for path, data in files.items():
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
pathlib.Path("data/model.bin").write_text(f"weights trained at K={k}")
with open("data/simulate/trees.jsonl", "w") as f:
    for tree in TREES:
        f.write(json.dumps(tree) + "\\n")
"""
# four simulated trees, three of them train, whose hidden instructions share more or fewer words with the original
TREES = [{"id": f"t{i}", "split": "train" if i < 3 else "test",
          "hidden": [{"turn": 1, "original": "write a short poem about the sea",
                      "rewritten": ("write a short poem about the moon", "list three sea animals", "bake bread",
                                    "hello")[i]},
                     {"turn": 2, "original": "now make it rhyme", "rewritten": ("now make it rhyme twice",
                                                                                "now make it sad", "sing", "x")[i]}]}
         for i in range(4)]
WRITE_STAGE = f"TREES = {TREES!r}\n" + WRITE_STAGE

DVC_YAML = {"stages": {
    "simulate": {"cmd": "python write_stage.py", "deps": ["write_stage.py", "seed.jsonl"],
              "params": ["contrast", "train"], "outs": ["data/model.bin", "data/simulate/trees.jsonl", *(f"data/{d}/environment.json" for d in (
                  "eval", "train/music/seed-0", "train/music/seed-1"))],
              "metrics": [{path: {"cache": False}} for path in (
                  "data/eval/records.csv", "data/eval/mt_bench/shared/records.csv", "data/fetch/summary.json",
                  "data/simulate/summary.json", "data/contrast/summary.json",
                  *(f"data/train/{v}/seed-{s}/metrics.json" for v in ("baseline", "music", "volume_matched")
                    for s in range(4) if (v, s) != ("baseline", 3)))]}}}
PARAMS = {"fetch": {"n": 9}, "simulate": {"turns": 2}, "contrast": {"turns": 1},
          "train": {"seeds": [0, 1, 2, 3], "variants": {"baseline": {}, "music": {}, "volume_matched": {}}},
          "eval": {"bootstrap_resamples": 300, "seed": 0, "cpu_dtype": "float32",
                   "compare": [["music", "baseline"], ["music", "volume_matched"]]}}
PROFILE = """# The toy study.
#
#   music-rm profile profiles/toy.yaml
#   dvc exp run -n toy-k2 -S contrast.turns=2
#   music-rm results toy
#
# Sizes: none.
train: {}
"""


def run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A git + DVC repo with two experiments, toy-k1 and toy-k2, and one named otherwise."""
    root = tmp_path_factory.mktemp("study")
    (root / "write_stage.py").write_text(WRITE_STAGE)
    (root / "seed.jsonl").write_text('{"prompt": "hi"}\n')
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (root / "profiles").mkdir()
    (root / "profiles" / "toy.yaml").write_text(PROFILE)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy study"], root)
    for name, k in (("toy-k2", 2), ("toy-k1", 1), ("other-k3", 3)):
        run(["dvc", "exp", "run", "-q", "-n", name, "-S", f"contrast.turns={k}"], root)
    run(["music-rm", "results", "toy"], root)
    return root


def section(page: str, heading: str) -> str:
    return page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """{first cell: the other cells} of the markdown tables in `text`."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def exp_revs(study: Path) -> dict[str, str]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], study).stdout)
    revs = {}

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("name")).startswith("toy-") and isinstance(node.get("data"), dict):
                revs[node["name"]] = node["data"]["rev"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(shown)
    return revs


def test_the_page_leads_with_music_minus_volume_matched_in_every_suite(study):
    page = (study / "results" / "toy.md").read_text()
    assert page.index("## music − volume_matched") < page.index("## What this study can") < page.index("## How it was run")
    lead = section(page, "music − volume_matched")
    rows = [line for line in lead.splitlines() if line.startswith("| ") and not line.startswith("| suite")]
    # 3 held-out suites and 2 MT-Bench turns, at K = 1 and 2
    assert len(rows) == 10
    assert [r.split(" | ")[1] for r in rows] == ["1"] * 5 + ["2"] * 5
    assert all(" / " in r.split(" | ")[-1] for r in rows) and "| 4 / 4 |" in rows[0] and "| 1 / 1 |" in rows[-1]
    assert "Intervals above 0 (music better):" in lead and "2.8 × SE" in page and "80% power" in page
    assert "other-k3" not in page
    held = section(page, "Held-out pairs")
    labels = list(table_rows(held))
    assert labels[:8] == ["reward model", "baseline, trained at K=1", "music, trained at K=1",
                          "volume_matched, trained at K=1", "reference: longer answer wins",
                          "baseline, trained at K=2", "music, trained at K=2", "volume_matched, trained at K=2"]
    assert "reference: GPT-4 (pairwise judge)" in section(page, "MT-Bench human votes (shared)")
    for png in ("toy-accuracy-by-k.png", "toy-differences.png"):
        assert (study / "results" / png).read_bytes().startswith(b"\x89PNG")


def test_the_page_counts_ties_and_each_seed_and_pairs_seen(study):
    page = (study / "results" / "toy.md").read_text()
    records = list(csv.DictReader(open(study / "results" / "toy-records.csv")))
    mine = [r for r in records if r["experiment"] == "toy-k1" and r["source"] == "held_out"
            and r["suite"] == "original" and r["variant"] == "music"]
    ties = sum(float(r["margin"]) == 0 for r in mine)
    assert 0 < ties < len(mine) == 120
    held = section(page, "Held-out pairs")
    assert f"| music, trained at K=1 | {ties} of 120 |" in held.split("Ties (records")[1]
    per_seed = [sum(outcome_of(r["margin"]) for r in mine if r["seed"] == str(s)) / 30 for s in range(4)]
    each_seed = table_rows(held.split("Each seed's accuracy")[1].split("Ties (records")[0])
    assert each_seed["music, trained at K=1"][0] == " · ".join(f"{v:.3f}" for v in per_seed)
    assert table_rows(held)["music, trained at K=1"][0].startswith(f"{sum(per_seed) / 4:.3f} [")
    assert "| reward model | original (30) | music_k1 (20) | music_k2 (20) |" in held
    assert "reference: longer answer wins" not in each_seed  # one seed: not in the per-seed table
    seen = section(page, "Pairs seen in training")
    assert "| baseline, trained at K=1 | 6 | 6 | 6 | n/a |" in seen and "| music, trained at K=2 | 12 | 12 | 12 | 12 |" in seen
    assert "K=1: 3 MUSIC train pairs, 6 original train pairs" in seen


def outcome_of(margin: str) -> float:
    m = float(margin)
    return 1.0 if m > 0 else 0.0 if m < 0 else 0.5


def test_a_paired_interval_on_the_page_is_recomputed_from_the_saved_records(study):
    """The records beside the page, read with the csv module, give the page's music − volume_matched interval
    through stats.seeded_bootstrap, on a held-out suite (4 seeds per arm) and on MT-Bench (clustered votes)."""
    page = (study / "results" / "toy.md").read_text()
    lead = {tuple(line.split(" | ")[:2]): line.split(" | ")[2:4] for line in
            section(page, "music − volume_matched").splitlines() if line.startswith("| ")}
    records = list(csv.DictReader(open(study / "results" / "toy-records.csv")))
    for source, suite, title in (("held_out", "music_k2", "Held-out pairs"),
                                 ("mt_bench/shared", "turn2", "MT-Bench human votes (shared)")):
        mine = [r for r in records if r["experiment"] == "toy-k2" and r["source"] == source
                and r["suite"].rsplit("/", 1)[-1] == suite]
        items = sorted({r["item"] for r in mine})
        clusters = {r["item"]: r["cluster"] for r in mine}

        def matrix(variant):
            seeds = sorted({int(r["seed"]) for r in mine if r["variant"] == variant})
            by = {(r["item"], int(r["seed"])): outcome_of(r["margin"]) for r in mine if r["variant"] == variant}
            return np.array([[by[(i, s)] for i in items] for s in seeds])

        music, matched = matrix("music"), matrix("volume_matched")
        got = seeded_bootstrap(music, matched, clusters=[clusters[i] for i in items], resamples=300, seed=0)
        assert got["estimate"] == pytest.approx(music.mean() - matched.mean(), abs=1e-6)
        shown, detectable = lead[(f"| {title}: {suite}", "2")]
        assert shown == f"{got['estimate']:.3f} [{got['ci_low']:.2f}, {got['ci_high']:.2f}]"
        # the minimum detectable difference: 2.8 standard errors, the standard error read from the 95% interval
        assert detectable == f"{(1.96 + 0.84) * (got['ci_high'] - got['ci_low']) / 3.92:.3f}"
    # MT-Bench's interval is over clusters: 12 questions, not 36 votes
    assert "36 (12 clusters)" in section(page, "music − volume_matched")


def test_the_committed_cpu_study_page_recomputes_from_its_committed_records():
    """results/cpu-study.md's lead row on held-out MUSIC pairs at K = 3, from results/cpu-study-records.csv alone
    (4 seeds per arm, 1000 resamples, seed 0: the study's eval params), with the csv module and the bootstrap."""
    results = Path(__file__).resolve().parent.parent / "results"
    page = (results / "cpu-study.md").read_text(encoding="utf-8")
    records = [r for r in csv.DictReader(open(results / "cpu-study-records.csv", encoding="utf-8"))
               if r["source"] == "held_out" and r["suite"] == "music_k3"]
    items = sorted({r["item"] for r in records})

    def matrix(variant):
        by = {(r["item"], int(r["seed"])): outcome_of(r["margin"]) for r in records if r["variant"] == variant}
        return np.array([[by[(i, s)] for i in items] for s in range(4)])

    got = seeded_bootstrap(matrix("music"), matrix("volume_matched"), resamples=1000, seed=0)
    shown = f"{got['estimate']:.3f} [{got['ci_low']:.2f}, {got['ci_high']:.2f}]"
    detectable = f"{(1.96 + 0.84) * (got['ci_high'] - got['ci_low']) / 3.92:.3f}"
    assert f"| Held-out pairs: music_k3 | 2 | {shown} | {detectable} | {len(items)} | 4 / 4 |" in page


def test_the_committed_cpu_study_page_and_plots_are_what_its_committed_files_render(tmp_path):
    """The whole page and both plots, byte for byte, from results/cpu-study-records.csv and
    results/cpu-study-experiments.json: no number on the page comes from anywhere else."""
    from tests.conftest import REPO

    for name in ("cpu-study-records.csv", "cpu-study-experiments.json"):
        (tmp_path / name).write_bytes((REPO / "results" / name).read_bytes())
    done = run([sys.executable, "-m", "music_rm", "results", "cpu-study", "--from-files", "--out",
                str(tmp_path / "cpu-study.md")], REPO)
    assert "1 experiments (cpu-study-k2)" in done.stdout
    for name in ("cpu-study.md", "cpu-study-accuracy-by-k.png", "cpu-study-differences.png"):
        assert (tmp_path / name).read_bytes() == (REPO / "results" / name).read_bytes(), name
    study = read_study(tmp_path / "cpu-study-records.csv", tmp_path / "cpu-study-experiments.json")
    assert [e.name for e in study.experiments] == ["cpu-study-k2"] and study.experiments[0].trees_kept["train"] == 60


def test_the_page_keeps_the_experiments_commits_as_branches_and_names_the_code_and_hardware(study):
    page = (study / "results" / "toy.md").read_text()
    revs = exp_revs(study)
    assert set(revs) == {"toy-k1", "toy-k2"}
    base = run(["git", "rev-parse", "HEAD"], study).stdout.strip()
    for name, rev in revs.items():
        assert run(["git", "rev-parse", f"study/{name}"], study).stdout.strip() == rev
        assert f"| {name} | {name[-1]} | `{base}` | `{rev}` | `study/{name}` |" in page
        lock = yaml.safe_load(run(["git", "show", f"{rev}:dvc.lock"], study).stdout)
        model = next(o for o in lock["stages"]["simulate"]["outs"] if o["path"] == "data/model.bin")
        assert f"| {name} | simulate | data/model.bin | {model['md5']} |" in page
    hardware = section(page, "Hardware and software")
    env = json.loads((study / "data" / "eval" / "environment.json").read_text())
    assert f"Environment 1: {env['cpu']}" in hardware and f"torch {env['packages']['torch']}" in hardware
    assert "Environment 2" not in hardware  # both experiments ran on this machine
    assert "Stages: data/eval, data/train/music (seeds 0, 1)." in hardware
    assert "Scoring dtype on a CPU (`eval.cpu_dtype`): float32" in page
    assert "the experiments differ in contrast.turns only: `toy-k1` contrast.turns=1, `toy-k2` contrast.turns=2" in page
    commands = section(page, "How it was run")
    assert "dvc exp run -n toy-k2 -S contrast.turns=2\nmusic-rm results toy" in commands


def test_results_twice_gives_the_same_bytes_also_after_the_page_is_committed(study):
    files = ["toy.md", "toy-records.csv", "toy-experiments.json", "toy-accuracy-by-k.png", "toy-differences.png"]
    first = {f: (study / "results" / f).read_bytes() for f in files}
    run(["music-rm", "results", "toy"], study)
    assert {f: (study / "results" / f).read_bytes() for f in files} == first
    # committed: `dvc exp show` no longer lists the experiments (another base commit); the kept branches do
    run(["git", "add", "results"], study)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the page"], study)
    assert exp_revs(study) == {}
    out = run(["music-rm", "results", "toy"], study)
    assert "2 experiments (toy-k1, toy-k2)" in out.stdout
    assert {f: (study / "results" / f).read_bytes() for f in files} == first
    run(["music-rm", "results", "toy", "--from-files"], study)  # the page again from the two files alone
    assert {f: (study / "results" / f).read_bytes() for f in files} == first


def test_results_of_a_study_without_experiments_is_one_line(study):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    (study / "profiles" / "nosuch.yaml").write_text(PROFILE)
    for args, message in ((["nosuch"], "no DVC experiment named nosuch-*"),
                          (["none"], "profiles/none.yaml: no such profile")):
        done = subprocess.run(["music-rm", "results", *args], cwd=study, env=env, capture_output=True, text=True)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not (study / "results" / "nosuch.md").exists()


def test_the_page_counts_the_train_trees_each_relatedness_threshold_keeps(study):
    data = section((study / "results" / "toy.md").read_text(encoding="utf-8"), "Data")
    for k in (1, 2):
        least = [min(relatedness(h["original"], h["rewritten"]) for h in t["hidden"] if h["turn"] <= k)
                 for t in TREES if t["split"] == "train"]
        kept = ", ".join(f"{sum(r >= x for r in least)} at {x}" for x in (0.1, 0.25, 0.5))
        assert f"K={k}: of 3 train trees, {kept}" in data
        assert len({sum(r >= x for r in least) for x in (0.1, 0.25, 0.5)}) > 1  # the toy trees tell the steps apart
    assert "this study used 0)" in data


def test_the_page_names_the_profiles_paths_from_repo_wherever_the_study_ran(tmp_path):
    from types import SimpleNamespace

    profile = tmp_path / "study.yaml"
    profile.write_text('fetch:\n  path: "${REPO}/../shared/hh.jsonl"\n  limit: 5\n'
                       'mt_bench: {sources: {shared: {questions: "${REPO}/q.jsonl"}}}\n')
    exps = [SimpleNamespace(params={"fetch": {"path": "/elsewhere/clone/../shared/hh.jsonl", "limit": 5},
                                    "mt_bench": {"sources": {"shared": {"questions": "/elsewhere/clone/q.jsonl"}}}}),
            SimpleNamespace(params={"fetch": {"path": "/other/../shared/hh.jsonl"}, "mt_bench": {}})]
    assert checkout_roots(profile, exps) == {"/elsewhere/clone", "/other"}


def test_relatedness_is_the_jaccard_overlap_of_content_words():
    # content words: {write, poem, cat} and {write, poem, dog}: 2 shared of 4
    assert relatedness("Write a poem about cats", "Write a poem about dogs") == 0.5
    assert relatedness("Write a poem about cats.", "write A POEM about cat") == 1.0  # case, plural, punctuation
    assert relatedness("Tell me about Paris", "Sum the numbers 3 and 4") == 0.0
    assert relatedness("the and of", "a an") == 0.0  # stop words only


def test_relatedness_stats_bins_and_shares():
    hidden = [("write poem cat", "write poem dog"),  # 0.5
              ("paris", "numbers"),  # 0
              ("red blue green", "red blue green"),  # 1
              ("alpha beta gamma delta", "alpha zeta")]  # 1/5 = 0.2
    trees = [{"hidden": [{"original": a, "rewritten": b} for a, b in hidden[:2]]},
             {"hidden": [{"original": a, "rewritten": b} for a, b in hidden[2:]]}]
    stats = relatedness_stats(trees)
    assert stats["hidden_instructions"] == 4
    assert stats["mean"] == pytest.approx((0.5 + 0 + 1 + 0.2) / 4)
    assert stats["share_unrelated"] == 0.25 and stats["share_at_least_half"] == 0.5
    assert stats["bins"] == {"0": 1, "0-0.25": 1, "0.25-0.5": 1, "0.5-0.75": 0, "0.75-1": 1}
    assert relatedness_stats([{"hidden": []}]) == {"hidden_instructions": 0}


def test_an_experiment_still_running_is_left_out():
    """While a grid runs, `dvc exp show --json` lists the running experiment with rev "workspace"."""
    done = "52b4d65192" + "0" * 30
    show = [{"rev": "workspace", "data": {"rev": "workspace"}},
            {"experiments": [{"name": "s-k2", "data": {"rev": "workspace", "metrics": {}}},
                             {"name": "s-k1", "data": {"rev": done, "metrics": {}}}]}]
    assert experiment_revs(show, "s-") == {"s-k1": done}


def test_the_cpu_study_profile_applies_and_its_page_shows_its_commands():
    from music_rm.commands.profile import expand
    from music_rm.core.params import apply_profile, read_yaml
    from tests.conftest import REPO

    profile = REPO / "profiles" / "cpu-study.yaml"
    assert commands_of(profile).splitlines() == ["music-rm profile profiles/cpu-study.yaml",
                                                 "dvc exp run -n cpu-study-k2", "music-rm results cpu-study",
                                                 "git checkout params.yaml"]
    params = read_yaml(REPO / "params.yaml")
    study = apply_profile(params, expand(read_yaml(profile), {"REPO": str(REPO)}), "cpu-study")
    assert study["train"]["seeds"] == [0, 1, 2, 3] and study["train"]["config"]["max_steps"] is None
    assert study["eval"]["compare"][0] == ["music", "volume_matched"]
