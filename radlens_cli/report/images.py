"""Image panels for the report (the paper's Fig. 3, left side): example cases with every
modality's slice through the ROI centre and the ROI outlined, and, for the top gained and
lost radiomic features, the test cases at the low and high end of each feature's values.

Display conventions, as a radiologist reads an axial slice: the image's own voxel axes are
permuted and flipped to the nearest axial view (no reslicing, no interpolation of the image),
anterior at the top and the patient's right on the left of the image (LPS physical space:
rows run towards +P, columns towards +L). Pixels keep their physical aspect; a scale bar gives
millimetres. The window is the 1st-99.5th percentile of the voxels inside the body (above a
tenth of the 99th percentile), per image volume. Thumbnails are palette PNGs, small enough to
embed in the one-file report.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

import numpy as np

from radlens_cli import log
from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage, RadlensError
from radlens_cli.io.images import read_image, read_mask, resample_like, same_geometry
from radlens_cli.io.manifest import MaskSpec, parse_mask_spec, read_manifest
from radlens_cli.io.tables import read_table
from radlens_cli.names import parse_list
from radlens_cli.report import figures as rf
from radlens_cli.report.markup import esc

OUTLINE = "#ff3b30"
THUMB_INCH = 2.1    # thumbnail size (the longer side) in inches at THUMB_DPI: >= 200 px on screen
THUMB_DPI = 100
PALETTE = 96        # colours of the quantised PNG
PANEL_BUDGET = 1_000_000  # bytes of base64 the panels may add to the report before a warning


@dataclass
class PanelSpec:
    manifest: str
    modalities: list
    mask: MaskSpec
    cases: int = 3


def panel_spec(manifest: str | None, modalities: str | None, mask: str | None, panel_cases: int = 3):
    """The image panels asked for (None when none of manifest, modalities, mask is given):
    the three go together; modalities a comma list, mask a mask spec."""
    if manifest is None and modalities is None and mask is None:
        return None
    if not (manifest and modalities and mask):
        raise ParameterError("image panels need {manifest}, {modalities} and {mask} together",
                             "manifest", "modalities", "mask")
    if panel_cases < 0:
        raise ParameterError("{panel_cases} must be 0 or more", "panel_cases")
    return PanelSpec(manifest, parse_list(modalities, "modalities"), parse_mask_spec(mask), panel_cases)


# ------------------------------------------------------------------ orientation

def axial_axes(direction) -> tuple[tuple[int, int], tuple[int, int], int]:
    """For a 3x3 direction matrix (columns: physical direction of voxel axes i, j, k):
    ((row axis, row sign), (column axis, column sign), slice axis) of the nearest axial view.

    Each voxel axis is matched to the physical axis it is closest to (the permutation with
    the largest total |cosine|); rows follow +P (anterior up), columns +L (patient's right on
    the left); a sign of -1 means the voxel axis runs the other way and is flipped."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[phys, p[phys]]) for phys in range(3)))
    ax_l, ax_p, ax_s = best  # voxel axis nearest to physical x (L), y (P), z (S)
    sign = lambda phys, ax: 1 if d[phys, ax] >= 0 else -1
    return (ax_p, sign(1, ax_p)), (ax_l, sign(0, ax_l)), ax_s


def axial_slice(vol_ijk: np.ndarray, direction, k: int) -> np.ndarray:
    """The display array (rows, columns) of slice `k` along the slice axis of a volume indexed
    [i, j, k] like SimpleITK's index (the transpose of GetArrayFromImage)."""
    (ra, rs), (ca, cs), sa = axial_axes(direction)
    sl = np.take(vol_ijk, k, axis=sa)
    rest = [a for a in range(3) if a != sa]       # axes of `sl`, in order
    sl = sl if rest.index(ra) == 0 else sl.T
    if rs < 0:
        sl = sl[::-1, :]
    if cs < 0:
        sl = sl[:, ::-1]
    return sl


def pixel_mm(spacing, direction) -> tuple[float, float]:
    (ra, _), (ca, _), _ = axial_axes(direction)
    return float(spacing[ra]), float(spacing[ca])


def window(vol: np.ndarray) -> tuple[float, float]:
    """1st-99.5th percentile inside the body (voxels above a tenth of the 99th percentile)."""
    v = vol[np.isfinite(vol)]
    if not v.size:
        return 0.0, 1.0
    top = np.percentile(v, 99)
    body = v[v > 0.1 * top] if top > 0 else v
    if body.size < 10:
        body = v
    lo, hi = np.percentile(body, [1, 99.5])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def nice_bar(width_mm: float) -> float:
    """A round scale-bar length near a quarter of the field of view."""
    target = width_mm / 4
    for v in (1, 2, 5, 10, 20, 50, 100, 200):
        if v >= target * 0.7:
            return float(v)
    return 200.0


# ------------------------------------------------------------------ reading

class CaseImages:
    """Images and masks of the manifest's cases, read on demand and kept for reuse."""

    def __init__(self, spec: PanelSpec):
        self.spec = spec
        self.man = read_manifest(spec.manifest)
        self.man.require_columns(list(spec.modalities) + [spec.mask.column], "image/mask")
        self.row = {cid: i for i, cid in enumerate(self.man.case_ids)}
        self._mask, self._img = {}, {}

    def has(self, case_id) -> bool:
        return case_id in self.row

    def mask(self, case_id):
        if case_id not in self._mask:
            path = self.man.resolve(self.man.frame[self.spec.mask.column].iloc[self.row[case_id]])
            self._mask[case_id] = read_mask(path, self.spec.mask, what=f"case {case_id} mask {self.spec.mask}")
        return self._mask[case_id]

    def view(self, case_id, modality: str):
        """(image slice, mask slice, (row mm, column mm), window, crop box) through the ROI centre."""
        key = (case_id, modality)
        if key in self._img:
            return self._img[key]
        import SimpleITK as sitk

        path = self.man.resolve(self.man.frame[modality].iloc[self.row[case_id]])
        img = read_image(path, f"case {case_id} {modality}")
        mask = self.mask(case_id)
        marr = sitk.GetArrayViewFromImage(mask)
        idx = np.argwhere(marr > 0)[:, ::-1].mean(axis=0)           # (i, j, k) centroid on the mask grid
        centre = mask.TransformContinuousIndexToPhysicalPoint([float(x) for x in idx])
        if not same_geometry(img, mask):   # the outline goes onto the image's own grid
            mask = resample_like(mask, img, "nearest")
        vol = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
        m = sitk.GetArrayFromImage(mask).transpose(2, 1, 0) > 0
        direction = img.GetDirection()
        _, _, sa = axial_axes(direction)
        k = int(round(img.TransformPhysicalPointToContinuousIndex(centre)[sa]))
        k = min(max(k, 0), vol.shape[sa] - 1)
        sl, ms = axial_slice(vol, direction, k), axial_slice(m, direction, k)
        # crop around the ROI (its extent over all slices, as displayed) with a margin
        proj = np.any(m, axis=sa)
        proj = axial_slice(np.expand_dims(proj, sa), direction, 0) if proj.any() else ms
        mm = pixel_mm(img.GetSpacing(), direction)
        box = _crop_box(proj, mm, sl.shape)
        out = (sl, ms, mm, window(vol), box)
        self._img[key] = out
        return out


def _crop_box(roi: np.ndarray, mm, shape):
    """Square (in mm) box around the ROI, twice its size and at least 40 mm, clipped to the image."""
    if not roi.any():
        return 0, shape[0], 0, shape[1]
    rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
    cr, cc = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    side = max(2.0 * max((rows[-1] - rows[0] + 1) * mm[0], (cols[-1] - cols[0] + 1) * mm[1]), 40.0)
    hr, hc = side / mm[0] / 2, side / mm[1] / 2
    r0, r1 = max(0, int(np.floor(cr - hr))), min(shape[0], int(np.ceil(cr + hr)))
    c0, c1 = max(0, int(np.floor(cc - hc))), min(shape[1], int(np.ceil(cc + hc)))
    return r0, r1, c0, c1


# ------------------------------------------------------------------ drawing

def panel_value(v: float) -> str:
    """A feature value short enough for a thumbnail title (3 significant digits; scientific
    only when it must be, with a short exponent)."""
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a < 1e-2 or a >= 1e5):
        m, e = f"{v:.2e}".split("e")
        return f"{m}e{int(e)}"
    return f"{v:.3g}"


def _draw(ax, view, title: str) -> None:
    sl, ms, (rmm, cmm), (lo, hi), (r0, r1, c0, c1) = view
    sl, ms = sl[r0:r1, c0:c1], ms[r0:r1, c0:c1]
    h, w = sl.shape[0] * rmm, sl.shape[1] * cmm
    ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, extent=(0, w, h, 0), interpolation="nearest")
    if ms.any() and min(ms.shape) > 1:
        ys, xs = (np.arange(ms.shape[0]) + 0.5) * rmm, (np.arange(ms.shape[1]) + 0.5) * cmm
        ax.contour(xs, ys, ms.astype(float), levels=[0.5], colors=OUTLINE, linewidths=0.9)
    bar = nice_bar(w)
    x0, y0 = 0.06 * w, 0.93 * h
    ax.plot([x0, x0 + bar], [y0, y0], color="white", lw=2.2, solid_capstyle="butt")
    import matplotlib.patheffects as pe

    halo = [pe.withStroke(linewidth=2, foreground="black")]   # legible on bright tissue too
    ax.text(x0 + bar / 2, y0 - 0.03 * h, f"{bar:g} mm", color="white", ha="center", va="bottom", fontsize=8,
            path_effects=halo)
    ax.text(0.5 * w, 0.02 * h, "A", color="#ffd400", ha="center", va="top", fontsize=10, fontweight="bold",
            path_effects=halo)
    ax.text(0.02 * w, 0.5 * h, "R", color="#ffd400", ha="left", va="center", fontsize=10, fontweight="bold",
            path_effects=halo)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=8, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _render_small(fig, name: str, title: str, caption: str) -> rf.Figure:
    """A figure as a palette PNG (no timestamp): photographs of grey levels need few colours."""
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=THUMB_DPI, metadata={"Software": None}, bbox_inches="tight",
                pad_inches=0.04, facecolor="white")
    plt.close(fig)
    im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    im.quantize(colors=PALETTE, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True)
    png = out.getvalue()
    return rf.Figure(name, title, caption, png, im.width, im.height)


def grid_figure(cells, ncols: int, name: str, title: str, caption: str, row_labels=None) -> rf.Figure:
    """cells: list of (view or None, title); drawn row by row, `ncols` per row."""
    matplotlib, plt = rf._plt()
    nrows = (len(cells) + ncols - 1) // ncols
    with matplotlib.rc_context(rf.RC):
        head, cap = (0.45 if title else 0.05), 0.42   # suptitle; two-line cell titles
        height = nrows * (THUMB_INCH + cap) + head
        fig, axes = plt.subplots(nrows, ncols, figsize=(THUMB_INCH * ncols, height), squeeze=False)
        for ax, (view, t) in itertools.zip_longest(axes.ravel(), cells, fillvalue=(None, "")):
            if view is None:
                ax.axis("off")
                if t:
                    ax.text(0.5, 0.5, t, ha="center", va="center", fontsize=6, wrap=True, transform=ax.transAxes)
                continue
            _draw(ax, view, t)
        if row_labels:
            for r, lab in enumerate(row_labels):
                axes[r][0].set_ylabel(lab, fontsize=7)
        if title:
            fig.suptitle(rf.wrap_title(title, 70), fontsize=9, y=1.0)
        # the thumbnails fill their cells (the default margins left them ~160 px wide)
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (head + cap) / height,
                            wspace=0.05, hspace=cap / THUMB_INCH)
        return _render_small(fig, name, title, caption)


# ------------------------------------------------------------------ the section

def _feature_values(radiomics: str):
    t = read_table(radiomics, "radiomics table")
    return t


def _safe(fn, skipped: list, what: str):
    try:
        return fn()
    except RadlensError as e:
        msg = str(e)
        if msg not in skipped:
            skipped.append(msg)
            log.warn(f"image panels: {what} left out: {msg}")
        return None


def extremes(values: np.ndarray, case_ids, n: int = 2):
    """(low cases, high cases) by value, ties broken by case_id; NaN values are ignored.
    With fewer than 2n valid cases the lists share none and split what there is."""
    ok = np.flatnonzero(np.isfinite(values))
    order = ok[np.lexsort((np.asarray(case_ids, dtype=str)[ok], values[ok]))]
    k = min(n, len(order) // 2)
    return list(order[:k]), list(order[len(order) - k:])


def panels_section(rep, imgs: CaseImages, radiomics: str, gains, losses) -> list:
    """Add the `panels` section: example cases, then the low/high test cases of each gained
    and lost feature (the rows of `gains`/`losses`, in order). Returns the example cases."""
    spec = imgs.spec
    table = _feature_values(radiomics)
    ids = np.asarray(table.case_id, dtype=object)
    split = np.asarray(table.split, dtype=object) if table.split is not None else imgs.man.split[
        [imgs.row.get(c, 0) for c in ids]]
    in_man = np.array([imgs.has(c) for c in ids])
    test = np.flatnonzero((split == "test") & in_man)
    where = "test split"
    if not len(test):
        test, where = np.flatnonzero(in_man), "all cases (no test split)"
    if not len(test):
        raise ParameterError(f"{{manifest}} {spec.manifest}: none of the radiomics table's cases is in it",
                             "manifest", exit_code=EXIT_DATA)
    skipped: list = []
    parts = [f"<p>Axial slices through the ROI centre (<code>{esc(spec.mask)}</code>, outlined in red), in the "
             f"image's own voxel grid permuted and flipped to the nearest axial view: anterior (A) at the top, the "
             f"patient's right (R) on the left; window 1st–99.5th percentile inside the body; scale bars in mm. "
             f"Cases from the {esc(where)}.</p>"]
    example = sorted(ids[test], key=str)[:spec.cases]
    if example:
        cells = []
        for cid in example:
            for m in spec.modalities:
                v = _safe(lambda: imgs.view(cid, m), skipped, f"case {cid} {m}")
                cells.append((v, f"{cid} · {m}" if v is not None else f"{cid} {m}: unreadable"))
        parts.append("<h3>Example cases</h3>")
        parts.append(grid_figure(cells, len(spec.modalities), "fig_panels_examples", "",
                                 f"{len(example)} {where} case(s), every modality ({', '.join(spec.modalities)}) "
                                 f"through the centre of the ROI."))
    col = {c: i for i, c in enumerate(table.columns)}
    for view, rows, slug in (("gained", gains, "gains"), ("lost", losses, "losses")):
        if rows is None or not len(rows):
            continue
        parts.append(f"<h3>Top {len(rows)} {view} features: low and high cases</h3>")
        for rank, (_, r) in enumerate(rows.iterrows(), 1):
            name = str(r["column"])
            modality = str(r.get("modality", name.rpartition("/")[0]))
            if name not in col:
                parts.append(f"<p class='muted'>{esc(name)}: not in the radiomics table; no panel.</p>")
                continue
            if modality not in spec.modalities:
                parts.append(f"<p class='muted'>{esc(name)}: modality {esc(modality)} not among --modalities; "
                             f"no panel.</p>")
                continue
            vals = np.asarray(table.values[test, col[name]], dtype=float)
            lo, hi = extremes(vals, ids[test])
            cells, listed = [], []
            for tag, sel in (("low", lo), ("high", hi)):
                for i in sel:
                    cid = ids[test][i]
                    v = _safe(lambda: imgs.view(cid, modality), skipped, f"case {cid} {modality}")
                    cells.append((v, f"{tag}: {panel_value(vals[i])}\n{cid}"))
                listed.append(f"{tag}: " + ", ".join(f"{vals[i]:.4g} ({ids[test][i]})" for i in sel))
            it = str(r.get("image_type", ""))
            note = "" if it in ("original", "") else f" — a {it} feature: the original image is shown"
            shown = ", ".join(f"{k} {r[k]:+.3f}" for k in ("delta_r2", "delta_importance")
                              if k in r.index and np.isfinite(r[k]))
            parts.append(grid_figure(
                cells, 4, f"fig_panels_{slug}_{rank}", f"{name}{note}",
                f"{view.capitalize()} #{rank}: {name} ({shown}). The two {where} cases with the lowest and the two "
                f"with the highest values of the feature, on {modality}{note} — {'; '.join(listed)}."))
    if skipped:
        parts.append("<p class='muted'>Left out: " + esc("; ".join(skipped[:10])) + "</p>")
    embedded = sum((len(p.png) + 2) // 3 * 4 for p in parts if isinstance(p, rf.Figure))
    if embedded > PANEL_BUDGET:
        log.warn(ParameterMessage(f"image panels take {embedded / 1e6:.1f} MB embedded (more than "
                                  f"{PANEL_BUDGET / 1e6:g} MB); fewer modalities or {{panel_cases}} keep the "
                                  f"report small", "panel_cases"))
    rep.add("panels", "What the features look like: image panels", parts)
    return list(example)
