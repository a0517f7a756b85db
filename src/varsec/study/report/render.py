"""Rendering: one document model, written as report.md, report.html (self-contained) and
tables/*.tex."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

Block = tuple[str, Any]  # ("p", text) | ("note", text) | ("table", Table) | ("figure", ...)


@dataclass
class Table:
    """A table block: the frame, its caption and an optional LaTeX file stem."""

    frame: pd.DataFrame
    caption: str
    stem: str | None = None


@dataclass
class Section:
    """A titled list of blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, kind: str, content: Any) -> None:
        self.blocks.append((kind, content))


def cell(value: Any) -> str:
    """A table cell as text (4 decimals for floats, two significant digits below 0.0001 so a
    small p-value or rate does not read as zero, blank for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if 0 < abs(value) < 5e-5:
            return f"{value:.2g}"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


# -- markdown -------------------------------------------------------------------------------------
def _md_table(table: Table) -> str:
    frame = table.frame
    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(h.replace("|", "/") for h in header) + " |",
             "|" + "---|" * len(header)]
    for index, values in frame.iterrows():
        cells = [str(index)] + [cell(v) for v in values]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return f"*{table.caption}*\n\n" + "\n".join(lines)


def to_markdown(title: str, sections: list[Section], root: Path) -> str:
    """The document as Markdown (figures linked relative to ``root``)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        for kind, content in section.blocks:
            if kind == "p":
                parts.append(content)
            elif kind == "note":
                parts.append(f"> **{content}**")
            elif kind == "list":
                parts.append("\n".join(f"- {item}" for item in content))
            elif kind == "table":
                parts.append(_md_table(content))
            elif kind == "figure":
                path, caption = content
                parts.append(f"![{caption}]({Path(path).relative_to(root).as_posix()})\n\n"
                             f"*{caption}*")
    return "\n\n".join(parts) + "\n"


# -- html -----------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.85em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3}caption{caption-side:top;text-align:left;font-style:italic;
padding-bottom:.3em}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em;font-weight:600}
.held{color:#11772d;font-weight:600}.not-held{color:#b3261e;font-weight:600}
.not-run{color:#777}.inconclusive{color:#8a5a00;font-weight:600;background:#fff4d6}
td.text{text-align:left}figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
"""


# A verdict cell's class: coloured as a badge in the claims table.
VERDICT_CSS = {"held": "held", "not held": "not-held", "not run": "not-run",
               "inconclusive": "inconclusive"}


def _html_table(table: Table) -> str:
    frame = table.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in
                   [frame.index.name or "", *frame.columns])
    body = []
    for index, values in frame.iterrows():
        cells = [f"<td>{html.escape(str(index))}</td>"]
        for value in values:
            text = html.escape(cell(value))
            css = VERDICT_CSS.get(text)
            if css is None and isinstance(value, str):
                css = "text"
            cells.append(f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><caption>{html.escape(table.caption)}</caption><thead><tr>{head}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(title: str, sections: list[Section]) -> str:
    """The document as ONE self-contained HTML file (images embedded as data URIs, no scripts)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for kind, content in section.blocks:
            if kind == "p":
                parts.append(f"<p>{html.escape(content)}</p>")
            elif kind == "note":
                parts.append(f'<p class="note">{html.escape(content)}</p>')
            elif kind == "list":
                items = "".join(f"<li>{html.escape(str(i))}</li>" for i in content)
                parts.append(f"<ul>{items}</ul>")
            elif kind == "table":
                parts.append(_html_table(content))
            elif kind == "figure":
                path, caption = content
                image = f'<img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
                parts.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption>"
                             "</figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- latex ----------------------------------------------------------------------------------------
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "▲": r"$\blacktriangle$", "★": r"$\star$",
                  "Δ": r"$\Delta$", "ε": r"$\epsilon$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment."""
    frame = table.frame
    columns = "l" + "r" * len(frame.columns)
    header = " & ".join(latex_escape(str(c)) for c in [frame.index.name or "", *frame.columns])
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(table.caption)}}}",
             rf"\begin{{tabular}}{{{columns}}}", r"\toprule", header + r" \\", r"\midrule"]
    for index, values in frame.iterrows():
        cells = [latex_escape(str(index))] + [latex_escape(cell(v)) for v in values]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


__all__ = ["Section", "Table", "cell", "latex_escape", "to_html", "to_latex", "to_markdown"]
