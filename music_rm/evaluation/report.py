"""Reports: markdown tables with one cell format, and a self-contained HTML page (tables and PNG plots inlined)
that opens offline."""
import base64
import html
from pathlib import Path


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


def cell(value: float | None, low: float | None, high: float | None, note=None) -> str:
    """A table cell: `0.917 [0.75, 1.00] (note)`, or `n/a (note)` without a value."""
    suffix = "" if note is None else f" ({note})"
    return "n/a" + suffix if value is None else f"{value:.3f} [{low:.2f}, {high:.2f}]{suffix}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
