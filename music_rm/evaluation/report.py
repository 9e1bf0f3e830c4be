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


LENGTH_MEASURES = (("chosen_longer", "Accuracy where the chosen answer is longer"),
                   ("chosen_shorter", "Accuracy where the chosen answer is shorter"),
                   ("controlled", "Length-controlled accuracy (the mean of the two above)"),
                   ("spearman", "Spearman's ρ of the margin with the length difference"))
LENGTH_NOTE = ("Length control: the accuracy on the items whose chosen answer is longer and on those where it is "
               "shorter, the length-controlled accuracy (their mean, n/a when either has no item; items of equal "
               "length left out, counted in the header), and Spearman's ρ of the margin (mean over seeds) with the length difference "
               "(characters of the answer counted right minus the other's, after the shared part), each with its 95% "
               "interval. A model that rewards length alone scores 1, 0, 0.5 and a ρ near 1.")


def truncated_line(truncated: dict) -> str:
    """`data.lengths.pairs_truncated` as the words printed beside a suite's numbers."""
    if truncated["max_length"] is None:
        return "none scored shortened (no max_length)"
    return f"{truncated['share']:.0%} of their conversations over max_length {truncated['max_length']} (scored shortened)"


def length_tables(suites: dict, name) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per LENGTH_MEASURES: one row per model with lengths (`name(variant)` its label), one
    column per suite ({suite label: estimates.SuiteResult}); [] when no model has lengths."""
    shown = {s: {v: m.length for v, m in r.models.items() if m.length is not None} for s, r in suites.items()}
    shown = {s: models for s, models in shown.items() if models}
    if not shown:
        return []
    variants = list(dict.fromkeys(v for models in shown.values() for v in models))
    out = []
    for key, title in LENGTH_MEASURES:
        def header(s):
            first = next(iter(shown[s].values()))
            if key == "controlled":
                return f"{s} (n={first['controlled']['n']}, {first['equal_length']['n']} equal)"
            return f"{s} (n={first[key]['n']})"
        rows = [[name(v), *("—" if v not in shown[s] else cell(shown[s][v][key]["estimate"], shown[s][v][key]["ci_low"],
                                                             shown[s][v][key]["ci_high"]) for s in shown)]
                for v in variants]
        out.append((title, ["reward model", *(header(s) for s in shown)], rows))
    return out


def length_markdown(suites: dict, name) -> str:
    """LENGTH_NOTE and length_tables as markdown; empty without lengths."""
    tables = length_tables(suites, name)
    return "\n\n".join([LENGTH_NOTE, *(f"{title}:\n\n{markdown_table(h, rows)}" for title, h, rows in tables)]
                       ) if tables else ""
