"""The saliency table (schema saliency/1): a CSV, one row per case and map, its provenance in
the `<file>.json` sidecar; joining the parts of a sharded run (`radlens merge`)."""

from __future__ import annotations

import json

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.files import read_sidecar
from radlens_cli.radiomics.merge import RUN_LOCAL, _first_difference

SALIENCY_SCHEMA = "saliency/1"


def case_folder(case_id: str) -> str:
    """A case's folder name under --maps: the case_id, other characters than [A-Za-z0-9_.+-] as `_`."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(case_id))
    return name if name not in ("", ".", "..") else "case"


def is_saliency_table(path: str) -> bool:
    """Whether `path` is a saliency table (its sidecar names the schema)."""
    if path == "-" or not str(path).lower().endswith((".csv", ".tsv")):
        return False
    side = read_sidecar(path)
    return bool(side) and side.get("radlens_schema") == SALIENCY_SCHEMA


def read_saliency(path: str):
    """(DataFrame, sidecar dict) of a saliency table."""
    import pandas as pd

    sep = "\t" if path.lower().endswith(".tsv") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype={"case_id": str, "method": str})
    except Exception as e:  # noqa: BLE001 - pandas raises many kinds
        raise RadlensError(f"{path}: cannot read the saliency table: {e}") from None
    return df, read_sidecar(path) or {}


def merge_saliency(paths: list[str], allow_incomplete: bool = False):
    """The rows of every part, sorted by case_id (stable within a case), after checking that
    the parts are one run's (parameters, manifest, every part once, no case twice).
    Returns (DataFrame, merged params, failures, part record of an incomplete merge)."""
    import pandas as pd

    parts = [(p, *read_saliency(p)) for p in paths]
    def params(side):
        p = side.get("params") or {}
        p = json.loads(p) if isinstance(p, str) else p
        return {k: v for k, v in p.items() if k not in RUN_LOCAL}
    first_path, _, first = parts[0]
    for path, _, side in parts[1:]:
        if params(side) != params(first):
            raise RadlensError(f"{path}: made with other parameters than {first_path} "
                               f"({_first_difference(params(first), params(side))}); merge only parts of one run")
        a = ((first.get("inputs") or {}).get("manifest") or {}).get("sha256")
        b = ((side.get("inputs") or {}).get("manifest") or {}).get("sha256")
        if a and b and a != b:
            raise RadlensError(f"{path}: made from another manifest than {first_path}; merge only parts of one run")
    seen, ids = {}, {}
    for path, df, side in parts:
        for cid in dict.fromkeys(df["case_id"]):
            if cid in seen:
                raise RadlensError(f"duplicate case_id {cid} in {seen[cid]} and {path}")
            seen[cid] = path
        rec = side.get("radlens_part") or {}
        rec = json.loads(rec) if isinstance(rec, str) else rec
        if rec:
            if rec["part_id"] in ids:
                raise RadlensError(f"part {rec['part_id']} given twice: {ids[rec['part_id']]} and {path}")
            ids[rec["part_id"]] = (path, rec["num_parts"])
    incomplete = None
    if ids:
        nums = {n for _, n in ids.values()}
        if len(nums) > 1:
            raise RadlensError(f"parts come from runs with different numbers of parts ({sorted(nums)})")
        n = nums.pop()
        missing = sorted(set(range(n)) - set(ids))
        if missing and not allow_incomplete:
            raise ParameterError(f"part(s) {', '.join(map(str, missing))} of {n} missing (use {{allow_incomplete}} "
                                 f"to merge the {len(ids)} given)", "allow_incomplete", exit_code=EXIT_DATA,
                                 plain={"allow_incomplete": "allow_incomplete=True"})
        incomplete = {"missing": missing, "num_parts": n} if missing else None
    df = pd.concat([d for _, d, _ in parts], ignore_index=True)
    df = df.sort_values(["case_id"], kind="stable").reset_index(drop=True)
    failures = []
    for _, _, side in parts:
        f = side.get("failures") or []
        failures += json.loads(f) if isinstance(f, str) else f
    merged = dict(first.get("params") if isinstance(first.get("params"), dict) else
                  json.loads(first.get("params") or "{}"))
    for k in ("part_id", "num_parts"):
        merged.pop(k, None)
    return df, merged, failures, incomplete
