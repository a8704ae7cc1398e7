"""A cohort's extraction: tasks from a manifest, the pool, and the case table it yields.

A case is a row of the table only when every one of its modalities succeeded; a failed or
skipped case is listed (case, modality, path, reason), never written as empty values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli import log
from radlens_cli.io.manifest import Manifest
from radlens_cli.io.tables import CaseTable
from radlens_cli.names import column_name, parse_column_names
from radlens_cli.radiomics.extract import INPUTS_KEY, Options, Result, Task, run_tasks



@dataclass
class Extraction:
    table: CaseTable | None
    failures: list[dict] = field(default_factory=list)  # status "failed" or "skipped"
    diagnostics: np.ndarray | None = None  # per row: JSON {modality: {diagnostic: value}}
    n_tasks: int = 0
    n_cached: int = 0
    inputs: dict = field(default_factory=dict)  # case -> DICOM objects read, geometry warning (if any)

    @property
    def n_failed_cases(self) -> int:
        return len({f["case_id"] for f in self.failures if f["status"] == "failed"})

    @property
    def n_skipped_cases(self) -> int:
        return len({f["case_id"] for f in self.failures if f["status"] == "skipped"})


def build_tasks(manifest: Manifest, modalities: list[str], opts: Options) -> list[Task]:
    """One task per (case, modality), in manifest order."""
    masks = manifest.paths(opts.mask_spec.column)
    refs = manifest.paths(opts.reference_modality) if opts.reference_modality else None
    images = {m: manifest.paths(m) for m in modalities}
    tasks = []
    for i, cid in enumerate(manifest.case_ids):
        case_images = tuple((m, images[m][i]) for m in modalities)
        if refs is not None and opts.reference_modality not in modalities:
            case_images += ((opts.reference_modality, refs[i]),)
        grids = other_grids(manifest, i, {m for m, _ in case_images} | {opts.mask_spec.column})
        for m in modalities:
            ref = refs[i] if refs is not None and m != opts.reference_modality else None
            tasks.append(Task(str(cid), m, images[m][i], masks[i], ref, case_images, grids))
    return tasks


def other_grids(manifest: Manifest, i: int, skip: set[str]) -> tuple:
    """The case's other path columns (a T2 left out of --modalities, say): a mask drawn on
    one of their images is on its case's grid (whether each is an image is looked at only
    when needed, see io.images.lattice_check)."""
    import os

    out = []
    for col in manifest.frame.columns:
        if col in skip or col in ("case_id", "split"):
            continue
        path = manifest.resolve(manifest.frame[col].iat[i])
        if path and os.path.exists(path):
            out.append((str(col), path))
    return tuple(out)


def _record(res: Result, reason: str | None = None) -> dict:
    return {"case_id": res.case_id, "modality": res.modality, "path": res.path,
            "reason": reason or res.reason, "status": res.status if res.status != "ok" else "failed"}


def assemble(manifest: Manifest, modalities: list[str], results: dict[tuple[str, str], Result]) -> Extraction:
    """The case table of the cases whose every modality succeeded, plus the failure list."""
    failures: list[dict] = []
    reference: dict[str, tuple[str, list[str]]] = {}  # modality -> (first case, feature names)
    rows, row_results = [], []
    for i, cid in enumerate(manifest.case_ids):
        cid = str(cid)
        res = [results[(cid, m)] for m in modalities]
        bad = [r for r in res if r.status != "ok"]
        if bad:
            failures.extend(_record(r) for r in bad)
            continue
        mismatch = None
        for r in res:
            ref = reference.setdefault(r.modality, (cid, r.names))
            if r.names != ref[1]:
                mismatch = _record(r, f"feature set differs from case {ref[0]} "
                                      f"({len(r.names)} vs {len(ref[1])} features)")
                break
        if mismatch:
            failures.append(mismatch)
            continue
        rows.append(i)
        row_results.append(res)
    if not rows:
        return Extraction(None, failures)
    columns = [column_name(m, name) for m in modalities for name in reference[m][1]]
    values = np.empty((len(rows), len(columns)), dtype=np.float64)  # filled in place: one copy
    for k, res in enumerate(row_results):
        values[k] = np.concatenate([np.asarray(r.values, dtype=np.float64) for r in res])
    diagnostics = np.array([json.dumps({r.modality: r.diagnostics for r in res}, sort_keys=True)
                            for res in row_results], dtype=object)
    sel = np.array(rows, dtype=np.int64)
    table = CaseTable(case_id=manifest.case_ids[sel], values=values, columns=columns,
                      split=manifest.split[sel], column_meta=parse_column_names(columns))
    return Extraction(table, failures, diagnostics)


def _tell_inputs(res: Result, told: dict) -> None:
    """Once per case: the warning of a mask on none of its images' lattices, and notes on
    where a DICOM mask was placed (the same for every modality of the case); `told` keeps
    each case's record, with the DICOM series of all its modalities."""
    raw = res.diagnostics.get(INPUTS_KEY) if res.diagnostics else None
    if not raw:
        return
    info = json.loads(raw)
    if res.case_id in told:
        told[res.case_id].setdefault("series", {}).update(info.get("series", {}))
        return
    told[res.case_id] = info
    if info.get("warning"):
        log.warn(f"case {res.case_id}: {info['warning']}")
    for note in info.get("notes", []):
        log.info(f"case {res.case_id}: {note}")


def extract_cohort(manifest: Manifest, modalities: list[str], opts: Options, jobs: int = 1,
                   on_result=None) -> Extraction:
    """Run every (case, modality) of `manifest` and assemble the table.

    on_result(result, done, total) is called as each task finishes (progress, messages).
    """
    tasks = build_tasks(manifest, modalities, opts)
    results: dict[tuple[str, str], Result] = {}
    n_cached = 0
    shared_names: dict[tuple[str, ...], list[str]] = {}
    told: dict = {}
    for res in run_tasks(tasks, opts, jobs):
        _tell_inputs(res, told)
        # compact: 8 bytes a value, one list of names per feature set (10^4 cases x 3 x 837
        # values as Python floats and strings would take gigabytes)
        res.values = np.asarray(res.values, dtype=np.float64)
        res.names = shared_names.setdefault(tuple(res.names), res.names)
        results[(res.case_id, res.modality)] = res
        n_cached += res.cached
        if on_result is not None:
            on_result(res, len(results), len(tasks))
    out = assemble(manifest, modalities, results)
    out.n_tasks, out.n_cached = len(tasks), n_cached
    out.inputs = {cid: told[cid] for cid in sorted(told)}
    return out
