"""HTML building blocks of the reports: the inline stylesheet, cell formatting, tables and the page.

A report is one self-contained file: :class:`_Page` embeds every figure as a
base64 PNG and the CSS inline, so it opens offline with no CDN. Each section
is ``<section id="..."><h2>...</h2>`` with a one-line "how to read this".
"""
from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lrl_core.report.plotting import figure_title, figure_to_markdown, figure_to_png

HTML_DPI = 100
MARKDOWN_DPI = 72
"""Key figures for Dagster metadata are rendered smaller: they are stored in the event log."""


CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --band: #f5f7fa; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 8px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
.subtitle { color: var(--muted); margin: 0; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 0; margin-bottom: 12px; z-index: 2; font-size: 0.92em; }
nav a { color: var(--accent); text-decoration: none; margin-right: 18px; }
nav a:hover { text-decoration: underline; }
section { margin: 30px 0 10px; }
h2 { font-size: 1.3em; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-bottom: 6px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.how { color: var(--muted); font-style: italic; margin: 4px 0 12px; max-width: 900px; }
.note { background: var(--band); border-left: 4px solid var(--line); padding: 8px 12px; color: var(--muted); }
ul.facts { margin: 6px 0 12px; padding-left: 20px; }
ul.facts li { margin: 3px 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 0.86em; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--band); font-weight: 600; }
thead tr:first-child th { border-bottom: 1px solid #bcccdc; }
td.label, th.label { text-align: left; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tbody tr td.better { background: #e6f4ea; color: #137333; font-weight: 600; }
tbody tr td.worse { background: #fce8e6; color: #c5221f; font-weight: 600; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 4px; }
details { margin: 8px 0 14px; }
summary { cursor: pointer; color: var(--accent); }
.better-text { color: #137333; font-weight: 600; }
.worse-text { color: #c5221f; font-weight: 600; }
footer { color: var(--muted); font-size: 0.8em; margin-top: 40px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    """Table cell text: 4-decimal floats, thousands-separated integers, a dash for missing."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if value != 0 and abs(value) < 1e-4 or abs(value) >= 1e7:
            return f"{value:.3e}"
        return f"{value:.4f}"
    return _esc(value)


def _fmt_change(value) -> tuple[str, str]:
    """Relative improvement as a signed percentage and its cell class (positive = reference better)."""
    if value is None or not np.isfinite(value):
        return "–", ""
    return f"{value:+.1%}", "better" if value > 0 else "worse" if value < 0 else ""


def _table(frame: pd.DataFrame, improvement: Sequence[str] = (), percent: Sequence[str] = (),
           label_columns: Sequence[str] = ()) -> str:
    """An HTML table of ``frame`` (index not shown).

    Columns in ``improvement`` are shown as signed percentages, green where
    positive (the reference model is better) and red where negative;
    ``percent`` columns as plain percentages; ``label_columns`` (and any
    non-numeric column) are left-aligned.
    """
    if frame.empty:
        return '<p class="note">No rows.</p>'
    columns = list(frame.columns)
    left = {c for c in columns if c in set(label_columns) or not pd.api.types.is_numeric_dtype(frame[c])}
    head = "<tr>" + "".join(
        f'<th class="label">{_esc(c)}</th>' if c in left else f"<th>{_esc(c)}</th>" for c in columns
    ) + "</tr>"
    body = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for name, value in zip(columns, row):
            if name in improvement:
                text, cls = _fmt_change(value)
            elif name in percent:
                text, cls = ("–" if not np.isfinite(value) else f"{value:.1%}"), ""
            else:
                text, cls = _fmt(value), "label" if name in left else ""
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{_esc(summary)}</summary>{body}</details>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _facts(items: Sequence[str]) -> str:
    """Bullet list; items are trusted HTML fragments built by this module."""
    return '<ul class="facts">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>" if items else ""


class _Page:
    """Accumulates sections and figures, then renders the document."""

    def __init__(self, title: str, subtitle: str):
        self.title = title
        self.subtitle = subtitle
        self.sections: list[tuple[str, str, str]] = []
        self.key_figures: dict[str, str] = {}

    def figure(self, fig, caption: str, key: str | None = None) -> str:
        """Embed ``fig`` as a base64 PNG (and keep it as a key figure under ``key``); the figure is consumed."""
        png = figure_to_png(fig, dpi=HTML_DPI)
        if key is not None:
            self.key_figures[key] = figure_to_markdown(fig, dpi=MARKDOWN_DPI)
        alt = figure_title(fig)
        encoded = base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{_esc(alt)}">'
                f"<figcaption>{_esc(caption)}</figcaption></figure>")

    def section(self, section_id: str, heading: str, how_to_read: str, body: str) -> None:
        self.sections.append((section_id, heading, f'<p class="how">How to read this: {_esc(how_to_read)}</p>{body}'))

    def render(self) -> str:
        nav = "".join(f'<a href="#{sid}">{_esc(h)}</a>' for sid, h, _ in self.sections)
        body = "".join(
            f'<section id="{sid}"><h2>{_esc(h)}</h2>{content}</section>' for sid, h, content in self.sections
        )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(self.title)}</title><style>{CSS}</style></head><body><main>"
            f'<header><h1>{_esc(self.title)}</h1><p class="subtitle">{_esc(self.subtitle)}</p></header>'
            f"<nav>{nav}</nav>{body}"
            "<footer>Generated by lrl_core.report; self-contained (no network needed).</footer>"
            "</main></body></html>"
        )


def _meta_table(meta: Mapping[str, object]) -> str:
    if not meta:
        return ""
    frame = pd.DataFrame({"fact": [str(k) for k in meta], "value": [_plain(v) for v in meta.values()]})
    return _table(frame, label_columns=["fact", "value"])


def _plain(value) -> str:
    if isinstance(value, float | np.floating):
        return _fmt(value)
    return str(value)
