"""Join the parts of a sharded extract-radiomics or embed run (SLURM array tasks) by case_id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.cases import table_part
from radlens_cli.io.files import input_path
from radlens_cli.io.formats import is_hdf5
from radlens_cli.io.tables import CaseTable, read_table
from radlens_cli.names import parse_column_names
from radlens_cli.provenance import json_attr


# Parameters that may differ between the parts of one run (where and how fast it ran).
RUN_LOCAL = ("part_id", "num_parts", "jobs", "cache_dir", "keep_going", "encoder", "batch_size", "device")


@dataclass
class Part:
    path: str
    table: CaseTable
    params: dict
    diagnostics: np.ndarray | None
    failures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    subcommand: str | None = None
    manifest: dict | None = None  # the manifest's input record: path and sha256
    part: dict | None = None  # {"part_id", "num_parts"} of a sharded run
    case_inputs: dict = field(default_factory=dict)  # case -> DICOM objects read, geometry warnings

    @property
    def empty(self) -> bool:
        return self.table.n_cases == 0

    def part_id(self):
        return (self.part or {}).get("part_id", self.params.get("part_id"))

    def num_parts(self):
        return (self.part or {}).get("num_parts", self.params.get("num_parts"))


def read_part(path: str) -> Part:
    """A case table written by extract-radiomics or embed (its parameters travel with it)."""
    table = read_table(path, "part", part="accept")
    diagnostics = None
    real = input_path(path, "part")  # `-`: the spooled copy read_table used
    if is_hdf5(real):
        import h5py

        with h5py.File(real, "r") as f:
            if "diagnostics" in f:
                diagnostics = np.array([x.decode() if isinstance(x, bytes) else str(x)
                                        for x in f["diagnostics"][()]], dtype=object)
    params = json_attr(table.attrs, "params", {})
    history = json_attr(table.attrs, "history", [])
    sub = history[-1].get("subcommand") if history and isinstance(history[-1], dict) else None
    manifest = json_attr(table.attrs, "inputs", {}).get("manifest")
    # what each case was read from: extract-radiomics records it as an attribute, embed in params
    case_inputs = {**(json_attr(table.attrs, "case_inputs", {}) or {}), **(params.get("case_inputs") or {})}
    return Part(path, table, params, diagnostics, json_attr(table.attrs, "failures", []),
                json_attr(table.attrs, "skipped", []), sub, manifest, table_part(table.attrs), case_inputs)


# Parameters read off the results (unknown in a part where no case succeeded).
DERIVED = ("embed_dim",)


def _comparable(params: dict, drop_derived: bool = False) -> dict:
    skip = RUN_LOCAL + ("case_inputs",) + (DERIVED if drop_derived else ())  # case_inputs: per case, not a setting
    return {k: v for k, v in (params or {}).items() if k not in skip}


def check_parts(parts: list[Part], allow_incomplete: bool = False) -> dict | None:
    """Refuse parts that do not belong together; returns the merged output's part record
    (None when complete, {"missing", "num_parts"} for an allowed incomplete merge)."""
    first = parts[0]
    for p in parts[1:]:
        if first.subcommand and p.subcommand and p.subcommand != first.subcommand:
            raise RadlensError(f"{p.path}: written by `radlens {p.subcommand}`, {first.path} by "
                               f"`radlens {first.subcommand}`; merge only parts of one run")
        a, b = (first.manifest or {}).get("sha256"), (p.manifest or {}).get("sha256")
        if a and b and a != b:
            raise RadlensError(f"{p.path}: made from another manifest than {first.path} "
                               f"({p.manifest.get('path')} sha256 {b[:12]} vs {first.manifest.get('path')} "
                               f"sha256 {a[:12]}); merge only parts of one run")
        either_empty = p.empty or first.empty
        if _comparable(p.params, either_empty) != _comparable(first.params, either_empty):
            diff = _first_difference(_comparable(first.params, either_empty), _comparable(p.params, either_empty))
            raise RadlensError(f"{p.path}: made with other parameters than {first.path} ({diff}); "
                               f"merge only parts of one run")
    full = [p for p in parts if not p.empty]
    for p in full[1:]:
        ref = full[0]
        if p.table.columns != ref.table.columns:
            a, b = set(ref.table.columns), set(p.table.columns)
            only = sorted(b - a)[:3] or sorted(a - b)[:3]
            what = (f"column(s) {', '.join(only)} in one part only" if only
                    else "the same columns in another order")
            raise RadlensError(f"{p.path}: columns differ from {ref.path}: {what}")
        if (p.table.split is None) != (ref.table.split is None):
            raise RadlensError(f"{p.path}: has {'no ' if p.table.split is None else ''}split while "
                               f"{ref.path} has{' one' if ref.table.split is not None else ' none'}")
    seen: dict[str, str] = {}
    for p in parts:
        for cid in p.table.case_id:
            if cid in seen:
                where = "twice in " + p.path if seen[cid] == p.path else f"in {seen[cid]} and {p.path}"
                raise RadlensError(f"duplicate case_id {cid} {where}")
            seen[cid] = p.path

    nums = {p.num_parts() for p in parts if p.num_parts() is not None}
    if len(nums) > 1:
        raise RadlensError(f"parts come from runs with different numbers of parts ({sorted(nums)})")
    if not nums:
        return None
    n = nums.pop()
    by_id: dict[int, str] = {}
    for p in parts:
        i = p.part_id()
        if i in by_id:
            raise RadlensError(f"part {i} of {n} given twice: {by_id[i]} and {p.path}")
        by_id[i] = p.path
    missing = sorted(set(range(n)) - set(by_id))
    if missing and not allow_incomplete:
        raise ParameterError(f"part(s) {', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''} "
                             f"of {n} missing (use {{allow_incomplete}} to merge the {len(by_id)} given)",
                             "allow_incomplete", exit_code=EXIT_DATA, plain={"allow_incomplete": "allow_incomplete=True"})
    return {"missing": missing, "num_parts": n} if missing else None


def merge_parts(parts: list[Part], allow_incomplete: bool = False) -> tuple[CaseTable, np.ndarray | None, dict]:
    """Rows of every part, sorted by case_id, after `check_parts`.

    Returns (table, diagnostics or None, summary) where summary holds the shared
    parameters (run-local ones dropped), the part ids, failures, skipped, and the part
    record of an incomplete merge.
    """
    if not parts:
        raise RadlensError("no part to merge")
    incomplete = check_parts(parts, allow_incomplete)
    first = parts[0]
    full = [p for p in parts if not p.empty] or [first]
    ref = full[0]
    case_id = np.concatenate([p.table.case_id for p in full])
    order = np.argsort(case_id.astype(str), kind="stable")
    values = np.vstack([p.table.values for p in full])[order]
    split = None if ref.table.split is None else np.concatenate([p.table.split for p in full])[order]
    diagnostics = None
    if all(p.diagnostics is not None and len(p.diagnostics) == p.table.n_cases for p in full):
        diagnostics = np.concatenate([p.diagnostics for p in full])[order]
    meta = dict(ref.table.column_meta)
    if not meta and first.subcommand in (None, "extract-radiomics", "merge"):
        meta = parse_column_names(ref.table.columns)
    table = CaseTable(case_id=case_id[order], values=values, columns=list(ref.table.columns), split=split,
                      column_meta=meta)
    params = {k: v for k, v in first.params.items() if k not in ("part_id", "num_parts")}
    summary = {"params": params, "extraction": first.params.get("extraction"),
               "parts": [p.part_id() for p in parts], "incomplete": incomplete,
               "subcommand": first.subcommand, "manifest": first.manifest,
               "failures": [f for p in parts for f in p.failures],
               "skipped": [f for p in parts for f in p.skipped],
               "case_inputs": dict(sorted({k: v for p in parts for k, v in p.case_inputs.items()}.items()))}
    return table, diagnostics, summary


def _first_difference(a, b, prefix="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        # the settings a user chose before their hash and what follows from them
        for k in sorted(set(a) | set(b), key=lambda k: (k == "params_sha256" or k in DERIVED, str(k))):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    if a is None or b is None:
        return f"{prefix.rstrip('.') or 'parameters'}: {'missing' if a is None else a} vs {'missing' if b is None else b}"
    return f"{prefix.rstrip('.')}: {json.dumps(a, default=str)[:80]} vs {json.dumps(b, default=str)[:80]}"
