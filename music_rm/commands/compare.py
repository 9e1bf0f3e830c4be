"""Do my numbers differ from the committed ones by more than their bootstrap intervals?

    music-rm compare                              # data/eval/metrics.json now against HEAD's
    music-rm compare --rev v0.2.0 data/eval/mt_bench/shared/metrics.json

Outputs are byte-identical on the machine type that made them only (data/*/environment.json records it);
on another CPU or a GPU, simulated trees and trained weights come out otherwise within sampling noise. For
every estimate with a 95% interval in the committed file (an accuracy, win rate, score or difference), this says
whether the value you have now lies inside that interval.
"""
import json
import subprocess
from pathlib import Path

import click

from ..core.cli import clean_errors
from ..core.errors import InputError

def rates(node, prefix: str = "") -> dict[str, dict]:
    """{dotted path: the dict} of every dict holding an estimate and its interval."""
    out = {}
    if isinstance(node, dict):
        if "ci_low" in node and "estimate" in node:
            out[prefix] = node
        for key, value in node.items():
            out.update(rates(value, f"{prefix}.{key}" if prefix else key))
    return out


def compare(now: dict, then: dict) -> list[tuple[str, float, float, float, float | None]]:
    """(path, committed value, its ci_low, ci_high, value now) for every committed rate."""
    current = rates(now)
    rows = []
    for path, old in sorted(rates(then).items()):
        if old["estimate"] is None:
            continue
        rows.append((path, old["estimate"], old["ci_low"], old["ci_high"], current.get(path, {}).get("estimate")))
    return rows


@click.command("compare")
@click.argument("metrics", nargs=-1, type=click.Path(path_type=Path))
@click.option("--rev", default="HEAD", show_default=True, help="The git revision holding the numbers to compare with.")
@clean_errors
def main(metrics, rev):
    """Compare METRICS files (default data/eval/metrics.json) with their versions at --rev, interval by interval."""
    for path in metrics or (Path("data/eval/metrics.json"),):
        if not path.is_file():
            raise InputError(path, None, None, "no such file")
        shown = subprocess.run(["git", "show", f"{rev}:{path.as_posix()}"], capture_output=True, text=True)
        if shown.returncode:
            raise InputError(path, None, None, f"not in git at {rev} ({shown.stderr.strip().splitlines()[-1]})")
        rows = compare(json.loads(path.read_text(encoding="utf-8")), json.loads(shown.stdout))
        outside = [r for r in rows if r[4] is None or not r[2] <= r[4] <= r[3]]
        for name, old, low, high, new in outside:
            click.echo(f"  {name}: {'missing' if new is None else f'{new:.3f}'} now, {old:.3f} [{low:.2f}, {high:.2f}] at {rev}")
        click.echo(f"{path}: {len(rows) - len(outside)} of {len(rows)} rates lie inside the 95% intervals at {rev}")
