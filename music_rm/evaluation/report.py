"""Reports: a self-contained HTML page (tables and PNG plots inlined) that opens offline, and PNG plots that are
byte-identical from run to run."""
import base64
import hashlib
import html
from pathlib import Path

# One colour per reward-model variant, the same in every plot and report (matplotlib's tab10): the paper's three
# fixed, any other variant one of the rest, picked by a hash of its name.
VARIANT_COLORS = {"baseline": "#1f77b4", "music": "#ff7f0e", "volume_matched": "#2ca02c"}
OTHER_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def variant_color(variant: str) -> str:
    """The colour of `variant` in every plot; "music, trained at K=2" is music's."""
    name = variant.split(",")[0].strip()
    if name in VARIANT_COLORS:
        return VARIANT_COLORS[name]
    return OTHER_COLORS[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(OTHER_COLORS)]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path) -> None:
    """Save and close a figure; no software or date metadata, so the same plot gives the same bytes."""
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    pyplot().close(fig)


def _table(header: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    lines = [f"<tr>{cells}</tr>"] + ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "<table>" + "".join(lines) + "</table>"


def html_report(title: str, sections: list[tuple]) -> str:
    """sections: (heading, kind, content) with kind "table" (content: (header, rows), the cells as the markdown
    table has them), "text" or "png" (a file path)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}img{max-width:100%}"
             "</style></head>"
             f"<body><h1>{html.escape(title)}</h1>"]
    for heading, kind, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if kind == "table":
            parts.append(_table(*content))
        elif kind == "png":
            data = base64.b64encode(Path(content).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p>{html.escape(content)}</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
