"""HTML building blocks every report section uses: escaping, number formatting, tables."""

from __future__ import annotations

import html
import math
import re

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


P_COLUMNS = re.compile(r"^(p|q)(_|$)|_p$|^wilcoxon_p|^p_|^q_")


def column_format(values, name: str = ""):
    """One number format for a whole column (a table mixing `-8.57e-04` with `0.120` reads
    badly): p- and q-values with 3 decimals and `< 0.001` below; a column of tiny numbers in
    scientific notation throughout; otherwise `fmt` (3 decimals, integers as integers)."""
    vals = []
    for v in values:
        if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            if np.isfinite(v):
                vals.append(abs(float(v)))
    if P_COLUMNS.search(str(name)):
        return fmt_p_fixed
    nonzero = [v for v in vals if v > 0]
    if nonzero and float(np.median(nonzero)) < 1e-2:
        return lambda v: (f"{v:.2e}" if isinstance(v, (float, np.floating)) and np.isfinite(v) else fmt(v))
    return lambda v: (f"{v:.3f}" if isinstance(v, (float, np.floating)) and np.isfinite(v)
                      and not float(v).is_integer() else fmt(v))


def fmt_p_fixed(v) -> str:
    """A p- or q-value with 3 decimals, `< 0.001` below (one format for the whole column)."""
    if v is None or not isinstance(v, (float, np.floating, int, np.integer)) or not np.isfinite(v):
        return fmt(v)
    return "< 0.001" if 0 <= v < 0.001 else f"{v:.3f}"


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
        # long names (t2/original_glrlm_GrayLevelNonUniformityNormalized) wrap at a readable width
        out.append(f"<tr{cls}>" + "".join(
            f'<td class="{("txt long" if len(str(c)) > 30 else "txt") if i in txt_cols else ""}">{esc(c)}</td>'
            for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)
