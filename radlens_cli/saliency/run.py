"""Saliency for every case of a dataset: maps on the box, numbers, maps back on each case's grid.

`explain_cases` walks the cases of a `CaseDataset` one at a time (a map is per case), a
failing case is a failure record and the others go on (as in embed); each finished case's
maps are resampled from the box the model saw onto the case's first-modality image and
written as NIfTI into `<maps>/<case_id>/` (one folder per case, replaced atomically).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from radlens_cli import log
from radlens_cli.errors import ParameterError, RadlensError
from radlens_cli.io.files import atomic_folder
from radlens_cli.io.images import read_image
from radlens_cli.saliency import metrics
from radlens_cli.saliency.methods import occlusion_numpy, saliency_map
from radlens_cli.saliency.model import LayerSite, Scorer, tap_torchscript

from radlens_cli.saliency.tables import case_folder


def map_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name))


def box_image(arr: np.ndarray, grid: dict, layout: str):
    """A map on the box (in `layout` order) as a SimpleITK image with the box's geometry."""
    import SimpleITK as sitk

    # heavy: the preprocessing module loads torch at import
    from radlens_cli.encoders.preprocess import to_layout

    zyx = to_layout(np.asarray(arr, dtype=np.float32), layout)  # xyz <-> zyx is its own inverse
    img = sitk.GetImageFromArray(np.ascontiguousarray(zyx))
    img.SetOrigin(tuple(grid["origin"]))
    img.SetSpacing(tuple(grid["spacing"]))
    img.SetDirection(tuple(grid["direction"]))
    return img


def on_case_grid(arr: np.ndarray, grid: dict, layout: str, reference):
    """The box map resampled (linear, 0 outside the box) onto `reference`'s grid, float32."""
    import SimpleITK as sitk

    return sitk.Resample(box_image(arr, grid, layout), reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                         sitk.sitkFloat32)


@dataclass
class CaseResult:
    case_id: str
    rows: list
    maps: dict  # name -> map on the box


@dataclass
class Explainer:
    """What to compute for one case (torch models; ONNX gets occlusion only)."""

    scored: object                     # model.ScoredModel
    methods: list
    layer: str | None = None
    output_index: int | None = None
    concept: object = None             # concept.ConceptMaps or None
    batch_size: int = 8
    deletion: bool = False
    site: object = None
    info: dict = field(default_factory=dict)

    def prepare(self, shape) -> None:
        """Resolve the layer on a zero input of `shape` (1, C, *box), before any case is read."""
        import torch

        sm = self.scored
        if sm is not None and not sm.is_onnx and any(m != "occlusion" for m in self.methods):
            if sm.source == "torchscript" and sm.tapped_layer is None:
                tap_torchscript(sm, self.layer, torch.zeros(shape, device=sm.device))
            tapped = sm.tapped_layer
            self.site = LayerSite(sm.model, "tap" if tapped else self.layer, torch.zeros(shape, device=sm.device))
            self.info["layer"] = tapped or self.site.name

    def _scorer(self, x):
        sm = self.scored
        if sm.is_onnx:
            def run_np(a):
                return sm.onnx._run(np.ascontiguousarray(np.asarray(a, dtype=sm.onnx.input_dtype)))
            return Scorer(run_np, None, self.output_index, numpy=True)
        if self.site is None and any(m != "occlusion" for m in self.methods):
            self.prepare(tuple(x.shape))
        site = self.site

        def run(t):
            if site is not None:
                site.reset()
            return sm.model(t)
        return Scorer(run, sm.task, self.output_index)

    def __call__(self, case_id: str, volume: np.ndarray, mask: np.ndarray) -> CaseResult:
        import torch

        rows, maps, scores_of, ends = [], {}, {}, {}
        blurred = metrics.blur(volume) if self.deletion else None
        if self.methods:
            sm = self.scored
            if sm.is_onnx:
                x = volume[None].astype(np.float32)
                scorer = self._scorer(x)
                rec = scorer.prepare(x, mask)
                fixed = sm.onnx.input_dims[0] if sm.onnx.input_dims else None
                maps["occlusion"] = occlusion_numpy(scorer, x, batch_size=1 if fixed else self.batch_size)
                scores_of["occlusion"] = lambda batch: np.asarray(scorer(batch), dtype=np.float64)
                recs = {"occlusion": rec}
            else:
                x = torch.from_numpy(np.ascontiguousarray(volume))[None].to(sm.device)
                scorer = self._scorer(x)
                # the first map's own forward pass on x fixes the output (class, mask): no extra pass
                scorer.arm(x, mask)
                recs = {}
                for m in self.methods:
                    maps[m] = saliency_map(m, scorer, x, self.site.module if self.site is not None else None)
                    if scorer.record is None:
                        scorer.prepare(x, mask)
                    recs[m] = scorer.record

                def torch_scores(batch, scorer=scorer):
                    with torch.no_grad():
                        return scorer(torch.from_numpy(batch.astype(np.float32)).to(sm.device)).double().cpu().numpy()
                for m in self.methods:
                    scores_of[m] = torch_scores
            agree = metrics.agreement({m: maps[m] for m in self.methods}, mask)
            for m in self.methods:
                row = {"case_id": case_id, "method": m, "output_index": recs[m]["output_index"],
                       "output": recs[m]["output"], "mass_in_mask": metrics.mass_in_mask(maps[m], mask),
                       "deletion_auc": self._deletion(volume, blurred, maps[m], scores_of[m], recs[m]["output"],
                                                      ends, "model")}
                row.update(agree[m])
                rows.append(row)
        if self.concept is not None:
            for col, (cmap, value, fn) in self.concept.maps(volume).items():
                name = f"concept_{col}"
                maps[name] = cmap
                rows.append({"case_id": case_id, "method": name, "output_index": None, "output": value,
                             "mass_in_mask": metrics.mass_in_mask(cmap, mask),
                             "deletion_auc": self._deletion(volume, blurred, cmap, fn, value, ends, name)})
        return CaseResult(case_id, rows, maps)

    def _deletion(self, volume, blurred, m, scores, start: float, ends: dict, output: str) -> float:
        """deletion_auc of map m. The curve's end points need no pass of their own: nothing
        removed is the unperturbed output (`start`), everything removed is the blurred box,
        the same input for every map of one output (`ends[output]`, run once per case)."""
        if not self.deletion:
            return float("nan")
        steps = metrics.DELETION_STEPS
        inner = [i for i, f in enumerate(steps) if 0 < f < 1]
        batch = metrics.deletion_inputs(volume, blurred, m, steps[inner])
        if output not in ends:
            batch = np.concatenate([batch, blurred[None].astype(batch.dtype)])
        out = np.concatenate([np.asarray(scores(batch[s:s + self.batch_size]), dtype=np.float64).reshape(-1)
                              for s in range(0, len(batch), self.batch_size)])
        if output not in ends:
            ends[output], out = float(out[-1]), out[:-1]
        curve = np.empty(len(steps))
        curve[inner] = out
        curve[steps <= 0] = start
        curve[steps >= 1] = ends[output]
        return metrics.deletion_auc(curve)


def write_case_maps(maps_dir: str, case_id: str, maps: dict, grid: dict, layout: str, reference) -> dict:
    """`<maps_dir>/<case>/<name>.nii.gz` for every map, on `reference`'s grid; the folder
    is written beside and renamed into place. Returns {name: path}."""
    import SimpleITK as sitk

    folder = os.path.join(maps_dir, case_folder(case_id))
    out = {}
    with atomic_folder(folder) as tmp:
        for name, arr in maps.items():
            img = on_case_grid(arr, grid, layout, reference)
            sitk.WriteImage(img, os.path.join(tmp, f"{map_name(name)}.nii.gz"), True)
            out[name] = os.path.join(folder, f"{map_name(name)}.nii.gz")
    return out


def explain_cases(explainer: Explainer, dataset, maps_dir: str | None = None) -> tuple[list, list]:
    """Every case of `dataset` (a CaseDataset): (rows of the finished cases, failure records)."""
    rows, failures = [], []
    bar = log.progress(total=len(dataset), desc="saliency", unit="case")

    def report(rec: dict) -> None:
        failures.append(rec)
        where = f"{rec['path']}: " if rec.get("path") else ""
        line = f"radlens saliency: failed: case {rec['case_id']}, {rec['modality']}: {where}{rec['reason']}"
        if bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            bar.write(line, file=sys.stderr)

    layout = dataset.cfg.layout
    for i, cid in enumerate(dataset.case_ids):
        try:
            arrs = dataset.load(i)
        except Exception as e:  # noqa: BLE001 - the case fails, the run goes on
            report(dataset.failure_record(i, e))
            bar.update(1)
            continue
        volume = np.asarray(arrs["volume"], dtype=np.float32)
        mask = np.asarray(arrs["mask"])
        try:
            if not mask.any():
                raise RadlensError("the mask does not reach into the box")
            res = explainer(cid, volume, mask)
            bad = [k for k, v in res.maps.items() if not np.isfinite(v).all()]
            if bad:
                raise RadlensError(f"non-finite map(s): {', '.join(bad)}")
            if maps_dir:
                first = dataset.images[i][0]
                write_case_maps(maps_dir, cid, res.maps, arrs["grid"], layout, read_image(first, "image"))
        except ParameterError:
            raise  # a setting, not this case: every case would fail the same way
        except RadlensError as e:
            report({"case_id": cid, "modality": "saliency", "path": "", "reason": str(e), "status": "failed"})
            bar.update(1)
            continue
        rows.extend(res.rows)
        bar.update(1)
    bar.close()
    return rows, failures


def table_columns(methods: list) -> list[str]:
    """The saliency table's columns, in order."""
    cols = ["case_id", "method", "output_index", "output", "mass_in_mask", "deletion_auc"]
    for m in methods:
        cols += [f"spearman_{m}", f"iou10_{m}"]
    return cols
