"""The README's numbers are the committed outputs' numbers."""
from tests.conftest import REPO


def test_the_readme_results_table_is_the_committed_eval_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    report = set((REPO / "data/eval/report.md").read_text(encoding="utf-8").splitlines())
    start = readme.index("| variant | original | music_k1 | music_k2 | music_k3 |")
    rows = [line for line in readme[start:] if line.startswith("|")][:6]
    assert len(rows) == 6 and rows[-1].startswith("| longer answer wins")
    assert [row for row in rows if row not in report] == []
