"""The report's saliency section: maps overlaid on the example cases, the agreement table.

Reads what `radlens saliency` wrote (the table and the NIfTI maps on each case's
first-modality grid); draws no model. Slices are those of the image panels (through the
ROI centre, nearest axial view, anterior up, patient's right on the left).
"""

from __future__ import annotations

import os

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.images import read_image, same_geometry
from radlens_cli.report import figures as rf
from radlens_cli.report import images as ri
from radlens_cli.report.markup import esc
from radlens_cli.saliency.tables import case_folder, read_saliency

LABELS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
          "occlusion": "occlusion"}
MAP_CMAP = "inferno"


def map_view(imgs: ri.CaseImages, case_id: str, modality: str, path: str):
    """The slice of the map at `path` that imgs.view(case_id, modality) shows (same k, same crop)."""
    import SimpleITK as sitk

    img_path = imgs.man.resolve(imgs.man.frame[modality].iloc[imgs.row[case_id]])
    img = read_image(img_path, f"case {case_id} {modality}")
    m = sitk.ReadImage(path)
    if not same_geometry(m, img):
        raise RadlensError(f"{path}: not on the grid of case {case_id}'s {modality}")
    mask = imgs.mask(case_id)
    marr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(marr > 0)[:, ::-1].mean(axis=0)
    centre = mask.TransformContinuousIndexToPhysicalPoint([float(x) for x in idx])
    direction = img.GetDirection()
    _, _, sa = ri.axial_axes(direction)
    vol = sitk.GetArrayFromImage(m).transpose(2, 1, 0)
    k = int(round(img.TransformPhysicalPointToContinuousIndex(centre)[sa]))
    k = min(max(k, 0), vol.shape[sa] - 1)
    return ri.axial_slice(vol, direction, k)


def _draw_overlay(ax, view, msl, title: str) -> None:
    ri._draw(ax, view, title)
    if msl is None:
        return
    _, _, (rmm, cmm), _, (r0, r1, c0, c1) = view
    m = np.clip(msl[r0:r1, c0:c1].astype(float), 0, None)
    top = float(m.max())
    if top <= 0:
        return
    h, w = m.shape[0] * rmm, m.shape[1] * cmm
    shown = np.ma.masked_less_equal(m / top, 0.05)
    ax.imshow(shown, cmap=MAP_CMAP, vmin=0, vmax=1, alpha=0.55, extent=(0, w, h, 0), interpolation="nearest")


TITLE_CHARS = 25   # what fits over a thumbnail (ri.THUMB_INCH) at the title's 8 pt (checked in chromium)


def map_title(case_id: str, name: str) -> str:
    """`case · method`, or for a concept map (long radiomic names) the case over the
    feature's name without `concept_`/`original_`, cut to what fits over the thumbnail."""
    if name in LABELS:
        return f"{case_id} · {LABELS[name]}"
    label = name[len("concept_"):] if name.startswith("concept_") else name
    label = label.replace("original_", "")
    if len(f"{case_id} · {label}") <= TITLE_CHARS:
        return f"{case_id} · {label}"
    return f"{case_id}\n{label if len(label) <= TITLE_CHARS else label[:TITLE_CHARS - 1] + '…'}"


def overlay_figure(imgs, cases, modality, maps_dir: str, names: list, fig_name: str, caption: str) -> rf.Figure:
    """One row per case, one column per map (`names`), each over the first modality."""
    matplotlib, plt = rf._plt()
    ncols = len(names)
    with matplotlib.rc_context(rf.RC):
        fig, axes = plt.subplots(len(cases), ncols, figsize=(ri.THUMB_INCH * ncols, (ri.THUMB_INCH + 0.25)
                                                             * len(cases)), squeeze=False)
        for r, cid in enumerate(cases):
            view = imgs.view(cid, modality)
            for c, name in enumerate(names):
                path = os.path.join(maps_dir, _folder(cid), f"{name}.nii.gz")
                ax = axes[r][c]
                if not os.path.exists(path):
                    ax.axis("off")
                    ax.text(0.5, 0.5, f"{cid}: no {name}", ha="center", va="center", fontsize=6,
                            transform=ax.transAxes)
                    continue
                _draw_overlay(ax, view, map_view(imgs, cid, modality, path), map_title(cid, name))
        fig.subplots_adjust(wspace=0.04, hspace=0.4 if any("\n" in map_title(c, n) for c in cases for n in names)
                            else 0.22)
        return ri._render_small(fig, fig_name, "", caption)


def _folder(case_id: str) -> str:
    return case_folder(case_id)


def agreement_table(df) -> "object":
    """Per method: cases, mean mass_in_mask, mean deletion_auc, mean Spearman and top-10% IoU
    with each other method (over cases)."""
    import pandas as pd

    rows = []
    for m, g in df.groupby("method", sort=False):
        r = {"map": LABELS.get(m, m), "cases": int(g["case_id"].nunique()),
             "mass_in_mask": g["mass_in_mask"].mean(), "deletion_auc": g["deletion_auc"].mean()}
        for c in g.columns:
            if c.startswith(("spearman_", "iou10_")) and g[c].notna().any():
                kind, other = c.split("_", 1)
                r[f"{'ρ' if kind == 'spearman' else 'IoU10'} {LABELS.get(other, other)}"] = g[c].mean()
        rows.append(r)
    out = pd.DataFrame(rows)
    if "deletion_auc" in out and out["deletion_auc"].isna().all():   # saliency ran without --deletion
        out = out.drop(columns="deletion_auc")
    return out


def mapped_cases(imgs: ri.CaseImages, maps_dir: str, cases: list) -> tuple[list, str]:
    """The rows of a maps folder's figure: the example cases that have maps in it, then (a
    saliency run of a part of the cohort) other cases of the manifest with maps, sorted, up
    to as many rows as example cases; and how the caption names them."""
    def has(c):
        return os.path.isdir(os.path.join(maps_dir, _folder(c)))
    rows = [c for c in cases if has(c)]
    if len(rows) == len(cases):
        return rows, "example case(s)"
    n_ex = len(rows)
    more = [c for c in sorted(imgs.row, key=str) if c not in rows and has(c)]
    rows += more[:len(cases) - len(rows)]
    if not n_ex:
        return rows, "mapped case(s) (the saliency run mapped none of the example cases)"
    return rows, f"case(s): the {n_ex} example case(s) with maps in this folder, then other mapped cases"


def saliency_section(rep, imgs: ri.CaseImages | None, tables: list[str], maps_dirs: list[str], cases: list) -> None:
    """Add the `saliency` section: the agreement table of every saliency table, and for each
    maps folder, the maps of `cases` over the first modality."""
    parts = ["<p>Where in the image: saliency maps of the fine-tuned model's output and radiomic concept "
             "maps (where the encoder's decoded feature is read), from <code>radlens saliency</code>. "
             "docs/saliency.md says what each map shows and when a concept map is meaningful.</p>"]
    for path in tables:
        df, _ = read_saliency(path)
        if not len(df):
            continue
        t = agreement_table(df)
        parts.append(f"<h3>Agreement and faithfulness: {esc(os.path.basename(path))}</h3>")
        parts.append(t.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", border=0,
                               classes="data"))
        parts.append("<p>How to read it: mass_in_mask is the fraction of a map's positive mass inside the ROI "
                     "(1 = all of it); deletion_auc (saliency --deletion) is the area under the explained output "
                     "as the map's top voxels are blurred away (lower = the map found what the output depends on); "
                     "ρ and IoU10 "
                     "are the mean Spearman correlation and top-10 % overlap with another method in the ROI's "
                     "bounding box — low values mean the methods point at different voxels.</p>")
    if imgs is not None and cases:
        modality = imgs.spec.modalities[0]
        for k, d in enumerate(maps_dirs):
            rows, note = mapped_cases(imgs, d, list(cases))
            names = sorted({os.path.splitext(os.path.splitext(f)[0])[0] for c in rows
                            for f in (os.listdir(os.path.join(d, _folder(c)))
                                      if os.path.isdir(os.path.join(d, _folder(c))) else [])
                            if f.endswith(".nii.gz")},
                           key=lambda n: (n.startswith("concept_"), list(LABELS).index(n) if n in LABELS else 0, n))
            if not names:
                continue
            concept = all(n.startswith("concept_") for n in names)
            parts.append(f"<h3>{'Concept maps' if concept else 'Saliency maps'}: {esc(os.path.basename(d))}</h3>")
            what = ("where the encoder reads each decoded radiomic feature (positive integrated-gradients "
                    "attribution)" if concept else "what each method says the output depends on")
            parts.append(overlay_figure(
                imgs, rows, modality, d, names, f"fig_saliency_{k}",
                f"{len(rows)} {note} (rows) on {modality}, ROI outlined in red; each column one map "
                f"({', '.join(LABELS.get(n, n) for n in names)}), scaled to its own maximum, values under 5 % "
                f"transparent. How to read it: bright = {what}; compare the columns of a row — where they "
                f"disagree, no single map is the explanation."))
    rep.add("saliency", "Where: saliency and concept maps", parts)
