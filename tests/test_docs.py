"""The docs cannot drift from the code: docs/architecture.md's table lists every module in its layer, and every
file path that README.md and docs/*.md cite exists (or is an output dvc.yaml declares, or an input a profile
names)."""
import re

import yaml

from music_rm.commands.deps import PACKAGE
from tests.conftest import REPO
from tests.test_layers import LAYERS

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP = ("music_rm", "stages", "bench", "tests", "fixtures", "docs", "data", "models", "configs", "profiles",
       "results", ".ci")


def test_the_architecture_table_lists_every_module_in_its_layer():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", text, re.M)
    layers = list(dict.fromkeys(layer for layer, _ in rows))
    assert layers == LAYERS
    modules = {(layer, ".".join(path.relative_to(PACKAGE / layer).with_suffix("").parts)) for layer in LAYERS
               for path in (PACKAGE / layer).rglob("*.py") if path.name != "__init__.py"}
    assert len(rows) == len(set(rows))
    assert set(rows) == modules, f"not in the table: {modules - set(rows)}; not modules: {set(rows) - modules}"


def declared_outputs() -> list[str]:
    """Every path dvc.yaml names (its outputs exist only after `dvc repro`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [next(iter(entry)) if isinstance(entry, dict) else entry for stage in stages.values()
            for kind in ("outs", "metrics", "plots") for entry in stage.get("do", stage).get(kind, [])]


def cited_paths(doc) -> set[tuple[str, str]]:
    """(path, how it is cited) of the repository files a page names: relative markdown links (from the page's
    folder) and `code` spans that start with a top-level folder (from the repository root). Placeholders
    (`<variant>`, `${key}`, globs) are left out."""
    text = doc.read_text(encoding="utf-8")
    found = set()
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+:", link):
            found.add(((doc.parent / link).resolve().relative_to(REPO.resolve()).as_posix(), f"]({link})"))
    for span in re.findall(r"`([^`\s]+)`", text):
        path = span.split(":")[0].rstrip(".,")
        if path.startswith(tuple(t + "/" for t in TOP)) and not re.search(r"[<>{}$*…]", path):
            found.add((path.rstrip("/"), f"`{span}`"))
    return found


# cited as it was at an older commit ("`data/eval/judge/metrics.json` of commit a614f0f")
HISTORICAL = {"data/eval/judge/metrics.json"}


def test_every_path_the_docs_cite_exists():
    outputs = declared_outputs()
    profiles = "".join(p.read_text(encoding="utf-8") for p in (REPO / "profiles").glob("*.yaml"))
    missing = []
    for doc in DOCS:
        for path, cited in sorted(cited_paths(doc)):
            output = any(o == path or o.startswith(path + "/") or path.startswith(o + "/") for o in outputs)
            user_input = path in profiles  # a file a profile reads, which its user puts in place
            if not ((REPO / path).exists() or output or user_input or path in HISTORICAL):
                missing.append(f"{doc.relative_to(REPO)}: {cited}")
    assert len(DOCS) >= 10 and missing == []


def test_every_page_section_a_script_cites_exists():
    """A script that sends its reader to a page's section ("docs/gpu.md, \"What has run on a GPU\"") names one
    that is there."""
    cited = 0
    for script in [*(REPO / "bench").iterdir(), *(REPO / "stages").glob("*.py")]:
        for page, section in re.findall(r"(docs/[\w-]+\.md|README\.md), \"([^\"]+)\"", script.read_text()):
            headings = re.findall(r"^#+ (.+)$", (REPO / page).read_text(encoding="utf-8"), re.M)
            assert section in headings, f"{script.name}: {page} has no section {section!r}"
            cited += 1
    assert cited >= 1
