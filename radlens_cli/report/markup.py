"""HTML building blocks every report section uses: escaping, number formatting, tables."""

from __future__ import annotations

import html
import math

import numpy as np


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def fmt(v, digits: int = 3) -> str:
    """Numbers as in the paper (3 decimals); p-values in scientific notation when small."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        if v != 0 and abs(v) < 10 ** (-digits):
            return f"{v:.2e}"
        if float(v).is_integer() and abs(v) >= 1:
            return str(int(v))
        return f"{v:.{digits}f}"
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "…"


def fmt_p(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3f}" if v >= 0.001 else f"{v:.1e}"


def table(header, rows, txt_cols=(0,), row_classes=None, caption=None) -> str:
    out = ['<div class="scroll"><table class="data">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th class="{"txt" if i in txt_cols else ""}">{esc(h)}</th>'
                                       for i, h in enumerate(header)) + "</tr></thead><tbody>")
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        out.append(f"<tr{cls}>" + "".join(f'<td class="{"txt" if i in txt_cols else ""}">{esc(c)}</td>'
                                          for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)
