"""The report's HTML: one page, no script and nothing fetched (images are data: URIs),
styled for the screen and for print. Every string that comes from the user (run paths,
task and class names, the command line, configs) goes through ``html.escape``."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from html import escape
from typing import Mapping, Sequence

from mmtk.report.tables import Table

STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       margin: 2rem auto; max-width: 1100px; padding: 0 1.5rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #d0d4da; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.meta { color: #555; margin: 0 0 1rem; }
.meta dt { font-weight: 600; float: left; clear: left; width: 8rem; }
.meta dd { margin: 0 0 .2rem 8.5rem; word-break: break-all; }
table { border-collapse: collapse; margin: .4rem 0 1.2rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border: 1px solid #d0d4da; padding: .3rem .6rem; vertical-align: top; }
th { background: #f2f4f7; text-align: left; }
td.num { text-align: right; }
td small { display: block; color: #555; font-size: .8em; white-space: nowrap; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid #e3e6ea; padding: .5rem; break-inside: avoid; page-break-inside: avoid; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: .85em; color: #444; margin-top: .3rem; word-break: break-all; }
pre { background: #f6f8fa; border: 1px solid #e3e6ea; padding: .6rem; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; word-break: break-all; }
@page { size: A4; margin: 14mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  table, pre { break-inside: avoid; page-break-inside: avoid; }
  .figures { grid-template-columns: repeat(2, 1fr); }
  pre { overflow: visible; }
}
"""


@dataclass(frozen=True)
class Figure:
    caption: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class RunConfig:
    name: str
    config: Mapping


def render(
    *, title: str, meta: Mapping[str, str], tables: Sequence[Table], figures: Sequence[Figure], runs: Sequence[RunConfig],
) -> str:
    """The whole page as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        '<dl class="meta">',
        *(f"<dt>{escape(key)}</dt><dd>{escape(value)}</dd>" for key, value in meta.items()),
        "</dl>",
        "<h2>Results</h2>",
        *(_table(table) for table in tables),
    ]
    if figures:
        parts += ["<h2>Plots</h2>", '<div class="figures">', *(_figure(figure) for figure in figures), "</div>"]
    if runs:
        parts.append("<h2>Run configurations</h2>")
        for run in runs:
            parts += [f"<h3>{escape(run.name)}</h3>", f"<pre>{escape(json.dumps(run.config, indent=2, sort_keys=False))}</pre>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in table.header) if any(table.header) else ""
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            notes = "".join(f"<small>{escape(note)}</small>" for note in cell.notes)
            opening = '<td class="num">' if cell.numeric else "<td>"
            cells.append(f"{opening}{escape(cell.text)}{notes}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    header = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table><caption>{escape(table.title)}</caption>{header}<tbody>{''.join(body)}</tbody></table>"


def _figure(figure: Figure) -> str:
    source = f"data:{figure.mime};base64,{base64.b64encode(figure.data).decode('ascii')}"
    caption = escape(figure.caption)
    return f'<figure><img src="{source}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
