"""The README's numbers are the committed results' numbers, and it links the repo's own pages."""
import re

from tests.conftest import REPO


def section(text: str, heading: str) -> str:
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_number_in_the_results_section_is_in_the_page_it_links():
    results = section((REPO / "README.md").read_text(encoding="utf-8"), "Results")
    study = (REPO / "results" / "cpu-study.md").read_text(encoding="utf-8")
    assert "](results/cpu-study.md)" in results and "](data/eval/report.md)" in results
    numbers = re.findall(r"−?\d+\.\d+", results)
    assert len(numbers) >= 4
    assert [n for n in numbers if n.replace("−", "-") not in study] == []
    assert len(results.strip().splitlines()) <= 6  # results as a few lines and links; tables live in the pages


def test_the_readme_links_the_paper_summary_in_this_repo():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "](docs/paper.md)" in readme and "../shared" not in readme
