"""A cohort's extraction: tasks from a manifest, the pool, and the case table it yields.

A case is a row of the table only when every one of its modalities succeeded; a failed or
skipped case is listed (case, modality, path, reason), never written as empty values.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from radlens_cli import log
from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage
from radlens_cli.io.files import sweep_stale_temporaries
from radlens_cli.io.manifest import Manifest, parse_mask_spec, read_manifest
from radlens_cli.io.runs import cohort_part
from radlens_cli.io.tables import CaseTable
from radlens_cli.names import column_name, parse_column_names
from radlens_cli.radiomics.extract import INPUTS_KEY, Options, Result, Task, run_tasks, summarise_failure
from radlens_cli.radiomics.params import load_params, params_hash, pyradiomics_version, resolve_params



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


def run_extraction(manifest: Manifest, modalities: list[str], opts: Options, jobs: int = 1,
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


@dataclass
class CohortExtraction(Extraction):
    """A cohort's extraction as `extract_cohort` returns it: the Extraction (`table` never
    None: an empty table when no case succeeded) plus what it was made from."""

    manifest: Manifest | None = None   # the cases tried (this part's)
    params_path: str = ""              # the PyRadiomics parameters file (a preset's own file)
    settings: dict = field(default_factory=dict)   # what the output's provenance records as `extraction`
    n_tried: int = 0                   # cases tried

    @property
    def skipped(self) -> list[dict]:
        return [f for f in self.failures if f["status"] == "skipped"]


def failure_pattern(res: Result) -> str:
    """A failure's reason without what is particular to its case (id, paths), so the same
    problem in many cases is recognised as one."""
    text = str(res.reason)
    for part in filter(None, (res.path, str(res.case_id))):
        text = text.replace(str(part), "<case>" if part == str(res.case_id) else "<path>")
    return re.sub(r"(/[^\s:,()]+)+", "<path>", text)


class FailureDigest:
    """One line per failed (case, modality) as it finishes, but a problem shared by many
    cases (a mask label missing everywhere) only `shown` times, then a summary at the end."""

    def __init__(self, name: str, n_tasks: int, bar, shown: int = 3):
        self.name, self.n_tasks, self.bar, self.shown = name, n_tasks, bar, shown
        self.same: dict[str, list[str]] = {}

    def _say(self, line: str) -> None:
        if self.bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

    def __call__(self, res: Result, done: int, total: int) -> None:
        self.bar.update(1)
        if res.status != "ok":
            what = "skipped" if res.status == "skipped" else "failed"
            key = what + ": " + failure_pattern(res)
            cases = self.same.setdefault(key, [])
            cases.append(f"{res.case_id}/{res.modality}")
            if len(cases) <= self.shown:
                self._say(f"radlens {self.name}: {what}: {summarise_failure(res)}")
            elif len(cases) == self.shown + 1:
                self._say(f"radlens {self.name}: more cases {key} (not listed one by one; summary at the end)")

    def summary(self) -> None:
        for key, cases in self.same.items():
            if len(cases) > self.shown:
                log.warn(ParameterMessage(
                    f"{len(cases)} (case, modality) task(s) {key}: {', '.join(cases[:5])}"
                    + (f" (+{len(cases) - 5} more)" if len(cases) > 5 else "")
                    + ("; every task failed alike: check {mask} and the cohort"
                       if len(cases) == self.n_tasks else ""), "mask"))


def extract_cohort(manifest: str | Manifest, modalities: list[str], mask: str, params: str | dict, *,
                   jobs: int = 1, part: tuple[int, int] = (0, 1), cache_dir: str | None = None,
                   reference_modality: str | None = None, resample_mask: bool = True,
                   empty_mask: str = "fail", max_outside: float = 0.01, split_seed: int = 0,
                   strict_geometry: bool = False, name: str = "extract-radiomics") -> CohortExtraction:
    """PyRadiomics features of every (case, modality) of a cohort manifest (a path, or a
    read Manifest) -- or of part (part_id, num_parts) of it -- as a case table.

    mask: the mask column with optional labels (`gland`, `zones:1+2`, `seg:prostate`);
    params: a preset name (`paper`, `quick`), a YAML file or a parameters dict. A failed
    case is left out of the table and listed in `failures` (never raised): what to do
    with a run whose cases failed is the caller's (the CLI's --keep-going). Progress and
    per-case failures go to stderr, like the command's."""
    if empty_mask not in ("skip", "fail"):
        raise ParameterError(f"{{empty_mask}} must be skip or fail (got {empty_mask!r})", "empty_mask")
    if not 0.0 <= max_outside < 1.0:
        raise ParameterError(f"{{max_outside}} must be in [0, 1) (got {max_outside})", "max_outside")
    spec = parse_mask_spec(mask)
    manifest_path = manifest if isinstance(manifest, str) else manifest.path
    man = read_manifest(manifest, split_seed) if isinstance(manifest, str) else manifest
    man.require_images(modalities, spec)
    if reference_modality:
        man.require_columns([reference_modality], "reference modality")
    if isinstance(params, dict):
        params_path, params = "", params
    else:
        params_path = resolve_params(params)  # a preset name: provenance records (and hashes) its file
        params = load_params(params_path)
    if cache_dir:
        if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
            raise ParameterError(f"{{cache_dir}} is a file, not a folder: {cache_dir}", "cache_dir",
                                 exit_code=EXIT_DATA)
        os.makedirs(cache_dir, exist_ok=True)
        if sweep_stale_temporaries(cache_dir):
            log.debug(f"removed temporary files left in {cache_dir} by a killed run")
    man = cohort_part(man, manifest_path, "extract", *part)
    opts = Options(params=params, mask_spec=spec, reference_modality=reference_modality,
                   resample_mask=resample_mask, empty_mask=empty_mask,
                   cache_dir=os.path.abspath(cache_dir) if cache_dir else None, max_outside=max_outside,
                   strict_geometry=strict_geometry)
    bar = log.progress(total=len(man) * len(modalities), desc="extract", unit="task")
    digest = FailureDigest(name, len(man) * len(modalities), bar)
    log.info(f"{len(man)} case(s) x {len(modalities)} modalit{'y' if len(modalities) == 1 else 'ies'} "
             f"with {jobs} job(s)" + (f", cache {cache_dir}" if cache_dir else ""))
    try:
        ext = run_extraction(man, modalities, opts, jobs, digest)
    finally:
        bar.close()
    digest.summary()
    if ext.n_cached:
        log.info(f"{ext.n_cached} of {ext.n_tasks} task(s) taken from the cache")
    if ext.table is None:  # an empty part of an array, or no case succeeded
        ext.table = CaseTable(case_id=np.array([], dtype=object), values=np.zeros((0, 0)), columns=[],
                              split=np.array([], dtype=object))
        ext.diagnostics = np.array([], dtype=object)
    out = CohortExtraction(**vars(ext), manifest=man, params_path=params_path, n_tried=len(man),
                           settings={"modalities": modalities, "mask": str(spec), "pyradiomics_params": params,
                                     "params_sha256": params_hash(params), "pyradiomics": pyradiomics_version(),
                                     "resampling": opts.resampling(), "empty_mask": empty_mask})
    if out.skipped:
        ids = sorted({f["case_id"] for f in out.skipped})
        log.info(f"{len(ids)} case(s) skipped for an empty mask: {', '.join(ids[:10])}"
                 + (" ..." if len(ids) > 10 else ""))
    return out
