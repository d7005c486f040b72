"""HTML of the report: escaping, number formatting, tables, notes and the page shell.

The page is HTML5 with one inline style sheet (:data:`_CSS`) and no script, so it opens
offline. Every text is escaped by :func:`_esc` unless a caller builds the markup.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

#: No public names: :mod:`harmonize.report` re-exports the package's public API.
__all__: list[str] = []

_CSS = """
:root{--ink:#1d2733;--muted:#5b6775;--line:#d5dbe2;--band:#f3f6f9;--accent:#0b5394}
*{box-sizing:border-box}
body{font:14px/1.5 "DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--ink);margin:0;
background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:26px;margin:8px 0 4px;color:var(--accent)}
h2{font-size:20px;margin:40px 0 8px;padding-top:12px;border-top:2px solid var(--accent)}
h3{font-size:16px;margin:28px 0 6px}
h4{font-size:14px;margin:18px 0 4px;color:var(--muted)}
p,li{max-width:980px}
.lead{color:var(--muted);margin-top:0}
nav.toc{background:var(--band);border:1px solid var(--line);padding:8px 16px;margin:16px 0;
columns:2;column-gap:32px}
nav.toc ol{margin:4px 0;padding-left:20px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12.5px;max-width:100%}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--band);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.missing td.status{color:#a33}
td.status{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11.5px}
.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:10.5px;
word-break:break-all}
figure{margin:12px 0 20px}
figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{color:var(--muted);font-size:12.5px;max-width:980px}
details{margin:6px 0 14px}
details>summary{cursor:pointer;color:var(--accent)}
.note{background:#fff8e5;border-left:4px solid #e6a700;padding:6px 12px;margin:10px 0}
.findings{background:var(--band);border:1px solid var(--line);padding:8px 16px}
.findings li{margin:3px 0}
footer{margin-top:48px;color:var(--muted);font-size:12px}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    """Format a number with ``digits`` significant figures (thousands separated); '–' if none."""
    if value is None or value is pd.NA:
        return "–"
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    if v == 0.0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude >= digits - 1:
        text = f"{v:,.0f}"
    else:
        text = f"{v:.{digits - 1 - magnitude}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text


def _fixed(value: object, decimals: int = 2) -> str:
    """Format a number with a fixed number of decimals (for kappa, CCC, ICC); '–' if none."""
    if not _finite(value):
        return "–"
    text = f"{float(value):.{decimals}f}"  # type: ignore[arg-type]
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _ci(
    est: object, lo: object, hi: object, digits: int = 3, fmt: Callable[..., str] | None = None
) -> str:
    """``estimate [low, high]`` (the interval only when both limits are finite)."""
    f = fmt if fmt is not None else (lambda v: _num(v, digits))
    text = f(est)
    if _finite(lo) and _finite(hi):
        text += f" [{f(lo)}, {f(hi)}]"
    return text


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _slug(*parts: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")


def _table(
    df: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    raw: Sequence[str] = (),
    row_class: Callable[[pd.Series], str] | None = None,
    cell_class: Mapping[str, str] | None = None,
) -> str:
    """An HTML table of already formatted cells (escaped unless the column is in ``raw``)."""
    cell_class = dict(cell_class or {})
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for col in df.columns:
            classes = " ".join(
                c for c in ("num" if col in numeric else "", cell_class.get(col, "")) if c
            )
            attr = f' class="{classes}"' if classes else ""
            text = str(row[col]) if col in raw else _esc(row[col])
            cells.append(f"<td{attr}>{text}</td>")
        rc = row_class(row) if row_class is not None else ""
        rows.append(f'<tr class="{rc}">' if rc else "<tr>")
        rows[-1] += "".join(cells) + "</tr>"
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{_esc(summary)}</summary>{body}</details>"


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _toc(entries: Sequence[tuple[str, str]]) -> str:
    """The table of contents: one link per (anchor id, title), in order."""
    return (
        '<nav class="toc"><b>Contents</b><ol>'
        + "".join(f'<li><a href="#{k}">{_esc(v)}</a></li>' for k, v in entries)
        + "</ol></nav>"
    )


def _page(title: str, body: str) -> str:
    """The HTML5 document: UTF-8, the inline style sheet :data:`_CSS`, ``body`` in ``<main>``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
