"""The HTML pieces report.html is made of: every string escaped and inside an element, figures inline,
one page with a Content-Security-Policy that forbids scripts and every fetch."""

from __future__ import annotations

import html
from typing import Any

from toolkit.saving import WRITTEN_BY

TEXT_CHARS = 1000  # longer texts are cut on the page, and the page says so
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;
color:#222;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.15rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border-bottom:1px solid #eee;padding:.25rem .6rem;
text-align:left;vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}figure{margin:.5rem 0}figure svg{width:100%;height:auto;display:block}
.panels{display:flex;flex-wrap:wrap;gap:.5rem}.panels svg{flex:1 1 20rem;min-width:0}
td.text{white-space:pre-wrap;overflow-wrap:anywhere;min-width:14rem;max-width:40rem}
.cut,.muted{color:#777;font-size:.85em}.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4rem .7rem}
.ok{background:#eef8ee;border-left:4px solid #4a4;padding:.4rem .7rem}code{overflow-wrap:anywhere}
@media (max-width:40rem){body{font-size:14px;padding:.5rem}th,td{padding:.2rem .35rem}}
@media print{body{max-width:none;font-size:11pt}.scroll{overflow:visible}section,figure,tr{break-inside:avoid}
h2{break-after:avoid}}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def text_cell(text: Any, limit: int = TEXT_CHARS) -> str:
    """A user's text in a table cell: escaped, direction left to the browser, cut with a note when long."""
    text = str(text)
    note = (f' <span class="cut">[cut: first {limit:,} of {len(text):,} characters shown]</span>'
            if len(text) > limit else "")
    return f'<td class="text" dir="auto">{e(text[:limit])}{note}</td>'


def table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` hold ready-made cells (``<td>...``); ``header`` plain strings, escaped here."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def td(value: Any, digits: int = 4) -> str:
    """A cell: a float with ``digits`` decimals, an int (a count) with thousands separators, else text."""
    if isinstance(value, float):
        return f'<td class="num">{value:.{digits}f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    return f'<td dir="auto">{e(value)}</td>'


def row_td(number: Any) -> str:
    """A row number: as the file numbers it (found by it, like a line number), so no thousands separators."""
    return f'<td class="num">{e(number)}</td>'


def section(ident: str, title: str, body: str) -> str:
    return f'<section id="{e(ident)}"><h2>{e(title)}</h2>{body}</section>'


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption class=\"muted\">{e(caption)}</figcaption></figure>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="{WRITTEN_BY}">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")
