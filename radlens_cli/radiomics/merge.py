"""Join extract-radiomics parts (SLURM array tasks) by case_id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.tables import CaseTable, read_table
from radlens_cli.radiomics.names import column_meta


@dataclass
class Part:
    path: str
    table: CaseTable
    params: dict
    diagnostics: np.ndarray | None
    failures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _json_attr(attrs: dict, key: str, default):
    raw = attrs.get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return default


def read_part(path: str) -> Part:
    """A case table written by extract-radiomics (HDF5: its parameters travel with it)."""
    from radlens_cli.io.files import input_path
    from radlens_cli.io.tables import is_hdf5

    table = read_table(path, "radiomics part")
    diagnostics = None
    real = input_path(path, "radiomics part")  # `-`: the spooled copy read_table used
    if is_hdf5(real):
        import h5py

        with h5py.File(real, "r") as f:
            if "diagnostics" in f:
                diagnostics = np.array([x.decode() if isinstance(x, bytes) else str(x)
                                        for x in f["diagnostics"][()]], dtype=object)
    params = _json_attr(table.attrs, "params", {})
    return Part(path, table, params, diagnostics, _json_attr(table.attrs, "failures", []),
                _json_attr(table.attrs, "skipped", []))


def merge_parts(parts: list[Part], allow_incomplete: bool = False) -> tuple[CaseTable, np.ndarray | None, dict]:
    """Rows of every part, sorted by case_id; refuses duplicates, mixed parameters, other columns.

    Returns (table, diagnostics or None, summary) where summary holds the shared extraction
    parameters, the part ids, failures and skipped lists.
    """
    if not parts:
        raise RadlensError("no part to merge")
    first = parts[0]
    ref_params = first.params.get("extraction")
    for p in parts[1:]:
        if p.params.get("extraction") != ref_params:
            diff = _first_difference(ref_params, p.params.get("extraction"))
            raise RadlensError(f"{p.path}: extracted with other parameters than {first.path} ({diff}); "
                               f"merge only parts of one run")
        if p.table.columns != first.table.columns:
            a, b = set(first.table.columns), set(p.table.columns)
            only = sorted(b - a)[:3] or sorted(a - b)[:3]
            what = (f"column(s) {', '.join(only)} in one part only" if only
                    else "the same columns in another order")
            raise RadlensError(f"{p.path}: columns differ from {first.path}: {what}")
        if (p.table.split is None) != (first.table.split is None):
            raise RadlensError(f"{p.path}: has {'no ' if p.table.split is None else ''}split while "
                               f"{first.path} has{' one' if first.table.split is not None else ' none'}")
    seen: dict[str, str] = {}
    for p in parts:
        for cid in p.table.case_id:
            if cid in seen:
                where = "twice in " + p.path if seen[cid] == p.path else f"in {seen[cid]} and {p.path}"
                raise RadlensError(f"duplicate case_id {cid} {where}")
            seen[cid] = p.path

    ids = [(p.params.get("part_id"), p.params.get("num_parts")) for p in parts]
    nums = {n for _, n in ids if n is not None}
    if len(nums) > 1:
        raise RadlensError(f"parts come from runs with different --num-parts ({sorted(nums)})")
    if nums:
        n = nums.pop()
        got = sorted({i for i, _ in ids if i is not None})
        missing = sorted(set(range(n)) - set(got))
        if missing and not allow_incomplete:
            raise RadlensError(f"part(s) {', '.join(map(str, missing))} of --num-parts {n} missing "
                               f"(use --allow-incomplete to merge the {len(got)} given)")

    case_id = np.concatenate([p.table.case_id for p in parts])
    order = np.argsort(case_id.astype(str), kind="stable")
    values = np.vstack([p.table.values for p in parts])[order]
    split = None if first.table.split is None else np.concatenate([p.table.split for p in parts])[order]
    diagnostics = None
    if all(p.diagnostics is not None and len(p.diagnostics) == p.table.n_cases for p in parts):
        diagnostics = np.concatenate([p.diagnostics for p in parts])[order]
    table = CaseTable(case_id=case_id[order], values=values, columns=list(first.table.columns), split=split,
                      column_meta=dict(first.table.column_meta) or column_meta(first.table.columns))
    summary = {"extraction": ref_params, "parts": [i for i, _ in ids],
               "failures": [f for p in parts for f in p.failures],
               "skipped": [f for p in parts for f in p.skipped]}
    return table, diagnostics, summary


def _first_difference(a, b, prefix="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        # the readable settings before their hash
        for k in sorted(set(a) | set(b), key=lambda k: (k == "params_sha256", str(k))):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    if a is None or b is None:
        return f"{prefix.rstrip('.') or 'parameters'}: {'missing' if a is None else a} vs {'missing' if b is None else b}"
    return f"{prefix.rstrip('.')}: {json.dumps(a, default=str)[:80]} vs {json.dumps(b, default=str)[:80]}"
