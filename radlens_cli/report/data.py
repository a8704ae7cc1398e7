"""Reading the report's inputs: compare's DELTA.csv, stats' TABLE.csv, the radiomics table's
metadata, and any other CSV (correlate-summary, cka, probe, finetune metrics) generically.

Every reader is tolerant of extra columns and names the file and the missing column when
a required one is absent.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError
from radlens_cli.io.cases import check_table
from radlens_cli.io.files import input_path, read_sidecar, shown_name
from radlens_cli.io.formats import CASE_TABLE, decode_strings, open_h5, read_h5_attrs
from radlens_cli.io.tables import require_unique
from radlens_cli.names import FAMILY_ORDER, META_KEYS, parse_column
from radlens_cli.provenance import sha256_file

GROUP_BY_ORDER = ("family", "image_type", "modality", "modality_family")
# Radiomic features that grow with the ROI's size (besides the shape family): what a
# volume-regression fine-tune should make more decodable.
SIZE_FEATURES = ("Energy", "TotalEnergy", "GrayLevelNonUniformity", "RunLengthNonUniformity",
                 "SizeZoneNonUniformity", "DependenceNonUniformity", "Coarseness", "Busyness")


def family_key(f: str):
    f = str(f).lower()
    return (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER), f)


def _error(template: str, *params: str) -> ParameterError:
    """A data error naming the parameter (report.html.build's) that gave the file."""
    return ParameterError(template, *params, exit_code=EXIT_DATA)


def read_csv(path: str, what: str):
    """A CSV as a DataFrame; leading `#` comment lines (provenance) are skipped. what: the
    parameter that named the file (compare, stats, metrics...), shown in errors."""
    import pandas as pd

    real = input_path(path, what.replace("_", " ") + " table")
    with open(real, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    comments = []
    while lines and lines[0].startswith("#"):
        comments.append(lines.pop(0).lstrip("#").strip())
    body = "".join(lines)
    if not body.strip():
        raise _error(f"{{{what}}} {path}: empty CSV", what)
    try:
        df = pd.read_csv(io.StringIO(body))
    except Exception as e:  # pandas raises many types on malformed text
        raise _error(f"{{{what}}} {path}: cannot parse as CSV: {e}", what) from None
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["comments"] = comments
    return df


def _require(df, cols, what, path):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise _error(f"{{{what}}} {path}: missing column(s) {', '.join(missing)} "
                     f"(columns: {', '.join(map(str, df.columns[:12]))})", what)


def _parse_column_name(name: str) -> dict:
    """`t2/wavelet-LLH_glcm_Correlation` -> modality, image_type, family, feature (radlens_cli.names)."""
    return dict(zip(META_KEYS, parse_column(name)))


# Statistics of DELTA.csv whose bootstrap interval may travel as `<statistic>_ci_low/_ci_high`
# and that the views may be ranked by, with what each one means (labels in the report).
STATISTIC_LABEL = {"delta_r2_clipped": "Δr² (R² clipped at 0, mean over re-splits)",
                   "delta_r2": "Δr² (held-out decodability change)", "delta_importance": "ΔI (importance change)",
                   "delta_r2_mean": "mean Δr² across share seeds", "delta_importance_mean": "mean ΔI across share seeds"}
SINGLE_CHECKPOINT = "fine-tuned"


def _as_bool(series):
    """`decodable` as written by pandas (True/False), 1/0 or yes/no; anything else is False."""
    return series.astype(str).str.strip().str.lower().isin(("true", "1", "1.0", "yes"))


def read_delta(path: str):
    """compare's DELTA.csv, normalised for the report.

    - modality/image_type/family/feature derived from `column` when absent;
    - `checkpoint` added (one checkpoint, SINGLE_CHECKPOINT) when absent; attrs["checkpoints"]
      lists them in file order;
    - `decodable` read when present, else derived as R² > 0 in either stage (attrs says which);
    - intervals: attrs["ci"] maps each statistic to its (low, high) columns, read from
      `<statistic>_ci_low/_ci_high`; a bare `ci_low/ci_high` pair is recorded under None
      (statistic unknown: never drawn or labelled as a particular statistic).
    """
    import pandas as pd

    df = read_csv(path, "compare")
    _require(df, ["column"], "compare", path)
    if not ({"delta_importance", "delta_r2"} & set(df.columns) or {"r2_pre", "r2_ft"} <= set(df.columns)):
        raise _error(f"{{compare}} {path}: missing column(s) delta_importance or delta_r2 "
                     f"(columns: {', '.join(map(str, df.columns[:12]))})", "compare")
    parsed = pd.DataFrame([_parse_column_name(c) for c in df["column"]])
    for col in ("modality", "image_type", "family", "feature"):
        if col not in df.columns:
            df[col] = parsed[col]
        df[col] = df[col].fillna("").astype(str)
    text_cols = {"checkpoint", "column", "modality", "image_type", "family", "feature", "test", "decodable",
                 "null_delta_source"}
    for col in df.columns:
        if col not in text_cols:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "delta_r2" not in df.columns and {"r2_pre", "r2_ft"} <= set(df.columns):
        df["delta_r2"] = df["r2_ft"] - df["r2_pre"]
    if not len(df):
        raise _error(f"{{compare}} {path}: no rows", "compare")
    if "checkpoint" in df.columns:
        df["checkpoint"] = df["checkpoint"].fillna("").astype(str)
        df.attrs["single"] = False
    else:
        df.insert(0, "checkpoint", SINGLE_CHECKPOINT)
        df.attrs["single"] = True
    df.attrs["checkpoints"] = list(dict.fromkeys(df["checkpoint"]))
    dup = df.duplicated(["checkpoint", "column"])
    if dup.any():
        r = df[dup].iloc[0]
        raise _error(f"{{compare}} {path}: column {r['column']} appears twice"
                     + ("" if df.attrs["single"] else f" for checkpoint {r['checkpoint']}"), "compare")
    if "decodable" in df.columns:
        df["decodable"] = _as_bool(df["decodable"])
        df.attrs["decodable_source"] = "file"
    elif {"r2_pre", "r2_ft"} <= set(df.columns):
        df["decodable"] = (df["r2_pre"] > 0) | (df["r2_ft"] > 0)
        df.attrs["decodable_source"] = "derived"
    else:
        df["decodable"] = True
        df.attrs["decodable_source"] = "unknown"
    ci = {}
    for col in df.columns:
        if col.endswith("_ci_low") and col[:-len("_ci_low")] + "_ci_high" in df.columns:
            ci[col[:-len("_ci_low")]] = (col, col[:-len("_ci_low")] + "_ci_high")
    if {"ci_low", "ci_high"} <= set(df.columns):
        ci[None] = ("ci_low", "ci_high")
    df.attrs["ci"] = ci
    if "test" in df.columns:
        df["test"] = df["test"].fillna("").astype(str)
    return df


def rank_statistic(delta) -> str | None:
    """Which statistic compare's rank_gain ranks by, read from the values: the first candidate
    column whose descending order (among rows that have a rank) reproduces rank_gain."""
    if "rank_gain" not in delta.columns:
        return None
    for checkpoint, sub in delta.groupby("checkpoint", sort=False):
        sub = sub[sub["rank_gain"].notna()]
        if len(sub) < 2:
            continue
        order = sub.sort_values("rank_gain")
        for stat in STATISTIC_LABEL:
            if stat in order.columns:
                v = order[stat].to_numpy(dtype=float)
                if np.isfinite(v).all() and (np.diff(v) <= 1e-9 * max(1.0, float(np.abs(v).max()))).all():
                    return stat
        return None
    return None


def stat_label(stat: str | None) -> str:
    return STATISTIC_LABEL.get(stat, stat) if stat else "a statistic the file does not name"


def focus_checkpoint(delta, wanted: str | None) -> str:
    """The compared checkpoint the single-checkpoint sections describe: the last one, or `wanted`."""
    names = delta.attrs["checkpoints"]
    if wanted is None:
        return names[-1]
    if wanted not in names:
        raise _error(f"{{checkpoint}} {wanted}: not in the compare table (checkpoints: {', '.join(names)})",
                     "checkpoint")
    return wanted


def split_modality_family(group: str) -> tuple[str, str]:
    """`t2/glcm`, `t2:glcm` or `t2|glcm` -> ("t2", "glcm")."""
    m = re.split(r"[/:|]", str(group), maxsplit=1)
    return (m[0], m[1]) if len(m) == 2 else ("", str(group))


def stars_of(q) -> list[str]:
    """* <0.05, ** <0.01, *** <0.001 of a q-value (or p-value) array; NaN gives no star."""
    q = np.asarray(q, dtype=float)
    return ["***" if v < 0.001 else "**" if v < 0.01 else "*" if v < 0.05 else "" for v in q]


def read_stats(path: str):
    """stats' TABLE.csv (one row per group and group_by; several blocks with `checkpoint`).

    Stars are recomputed from q_bh when the table has it (older tables starred raw p);
    attrs["stars_from"] says which column the stars come from."""
    import pandas as pd

    df = read_csv(path, "stats")
    _require(df, ["group_by", "group", "r2_pre", "r2_ft"], "stats", path)
    for col in ("n_features", "mse_pre", "r2_pre", "mse_ft", "r2_ft", "wilcoxon_p", "p_null", "null_delta", "q_bh"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["group_by"] = df["group_by"].astype(str).str.strip()
    df["group"] = df["group"].astype(str).str.strip()
    if "checkpoint" in df.columns:
        df["checkpoint"] = df["checkpoint"].fillna("").astype(str)
    else:
        df.insert(0, "checkpoint", SINGLE_CHECKPOINT)
    if "q_bh" in df.columns:
        df["stars"] = stars_of(df["q_bh"])
        df.attrs["stars_from"] = "q_bh"
    else:
        if "stars" not in df.columns:
            df["stars"] = ""
        stars = df["stars"].astype(object)  # an all-empty column reads as float NaN
        df["stars"] = stars.where(stars.notna(), "").astype(str).replace("nan", "")
        df.attrs["stars_from"] = "wilcoxon_p" if "wilcoxon_p" in df.columns else "file"
    return df


def stats_for(stats, checkpoint: str, single: bool):
    """The Table-1 block of one checkpoint (a single-block table serves any checkpoint name)."""
    names = list(dict.fromkeys(stats["checkpoint"]))
    if len(names) == 1 and (single or names[0] == SINGLE_CHECKPOINT):
        return stats
    if checkpoint not in names:
        raise _error(f"{{stats}}: no Table-1 block for checkpoint {checkpoint} "
                     f"(the stats table has {', '.join(names)})", "stats")
    out = stats[stats["checkpoint"] == checkpoint]
    out.attrs = dict(stats.attrs)
    return out


def modality_family_r2(stats, delta):
    """DataFrame modality, family, r2_pre, r2_ft: from stats' modality_family rows, else
    the per-feature R² of DELTA averaged per group (the same definition as stats)."""
    import pandas as pd

    rows = stats[stats["group_by"] == "modality_family"] if stats is not None else None
    if rows is not None and len(rows):
        mf = [split_modality_family(g) for g in rows["group"]]
        out = pd.DataFrame({"modality": [m for m, _ in mf], "family": [f for _, f in mf],
                            "r2_pre": rows["r2_pre"].to_numpy(), "r2_ft": rows["r2_ft"].to_numpy()})
        out["source"] = "stats"
        return out
    if delta is not None and {"r2_pre", "r2_ft"} <= set(delta.columns):
        g = delta.groupby(["modality", "family"], sort=False)[["r2_pre", "r2_ft"]].mean().reset_index()
        g["source"] = "compare"
        return g
    return None


def radiomics_summary(path: str) -> dict:
    """Cohort summary from the radiomics case table without loading its values."""
    with open_h5(path, CASE_TABLE, "radiomics table") as f:
        for name in ("case_id", "columns"):
            if name not in f:
                raise _error(f"{{radiomics}} {path}: missing dataset `{name}` (not a valid case table)",
                             "radiomics")
        ids = decode_strings(f["case_id"][()])
        columns = decode_strings(f["columns"][()])
        require_unique(ids, f"radiomics table {path}: duplicate case_id")
        require_unique(columns, f"radiomics table {path}: duplicate column")
        meta = {k[len("column_"):]: decode_strings(f[k][()]) for k in f if k.startswith("column_")}
        split = decode_strings(f["split"][()]) if "split" in f else None
        shape = f["values"].shape if "values" in f else (len(ids), len(columns))
        attrs = read_h5_attrs(f)
    # a table written with --keep-going lacks its failed cases, a part lacks the others: say so,
    # as every other command reading a case table does
    check_table(attrs, path)
    if "modality" not in meta or "family" not in meta:
        parsed = [_parse_column_name(c) for c in columns]
        meta.setdefault("modality", np.array([p["modality"] for p in parsed], dtype=object))
        meta.setdefault("family", np.array([p["family"] for p in parsed], dtype=object))
        meta.setdefault("image_type", np.array([p["image_type"] for p in parsed], dtype=object))
    counts: dict[str, dict[str, int]] = {}
    for m, fam in zip(meta["modality"], meta["family"]):
        counts.setdefault(str(m), {}).setdefault(str(fam), 0)
        counts[str(m)][str(fam)] += 1
    image_types = sorted({str(t) for t in meta.get("image_type", [])})
    split_counts = {}
    if split is not None:
        for s in ("train", "val", "test"):
            split_counts[s] = int((split == s).sum())
    return {"path": path, "n_cases": int(shape[0]), "n_columns": int(shape[1]), "counts": counts,
            "image_types": image_types, "split": split_counts, "attrs": attrs}


def size_related(delta):
    """Rows of DELTA for radiomic features that scale with the ROI's size."""
    if delta is None or "r2_pre" not in delta.columns:
        return None
    fam = delta["family"].str.lower()
    feat = delta["feature"].astype(str)
    orig = delta["image_type"].str.lower().isin(["original", ""])
    mask = (fam == "shape") | (orig & feat.isin(SIZE_FEATURES))
    return delta[mask]


def file_record(role: str, path: str) -> dict:
    return {"role": role, "path": shown_name(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


TASK_OF_METRIC = {"qwk": "classify", "mse": "regress", "dice": "segment"}
TASK_VERB = {"classify": "classify", "regress": "regress", "segment": "segment"}


def task_from_metrics(df) -> str | None:
    """The fine-tuning task kind of a finetune --metrics CSV, from its metric column."""
    for col, kind in TASK_OF_METRIC.items():
        if col in df.columns:
            return kind
    return None


def checkpoint_identities(compare_path: str) -> dict:
    """label -> what compare recorded of each checkpoint (decoder and encoder with sha256),
    from DELTA.csv's provenance sidecar; {} for a table without one (older, or piped)."""
    if not compare_path or compare_path == "-" or not os.path.isfile(compare_path):
        return {}
    side = read_sidecar(compare_path) or {}
    params = side.get("params") if isinstance(side.get("params"), dict) else {}
    ids = dict(params.get("checkpoints")) if isinstance(params.get("checkpoints"), dict) else {}
    if isinstance(params.get("reference"), dict):
        ids["__reference__"] = params["reference"]
    return ids


def match_encoders(labels, enc_info, identities: dict) -> dict:
    """label -> (the --encoder record it was embedded with, how it was matched), by exact
    identity only: the sha256 (else the path) of the encoder the checkpoint's decoder
    recorded; without a record, a file stem equal to the label (or to it without a
    `dec-`/`dec_` prefix). Never a substring: `ft` must not match `dec_ft_pirads`.
    A label with no exact match is left out."""
    hashes = {}
    for e in enc_info:
        try:
            hashes[e["path"]] = sha256_file(e["path"])
        except OSError:
            hashes[e["path"]] = None
    stem = lambda p: os.path.splitext(os.path.basename(str(p)))[0]
    out = {}
    for lab in labels:
        rec = (identities.get(lab) or {}).get("encoder") or {}
        hit = None
        if rec.get("sha256"):
            hit = next(((e, "sha256") for e in enc_info if hashes[e["path"]] == rec["sha256"]), None)
        elif rec.get("path"):
            hit = next(((e, "recorded path") for e in enc_info
                        if os.path.abspath(e["path"]) == os.path.abspath(rec["path"])), None)
        elif not rec:
            bare = re.sub(r"^dec[-_]", "", str(lab))
            hit = next(((e, "file name") for e in enc_info if stem(e["path"]) in (lab, bare)), None)
        if hit is not None:
            out[lab] = hit
    return out


def describe_task(task: str | None, target: str | None) -> str:
    """`regress gland_volume_ml`, `classify risk`, `segment lesion:2`."""
    if not task:
        return ""
    return f"{TASK_VERB.get(task, task)} {target}" if target else f"{task} (target not recorded)"


def epoch_of_label(label: str):
    """(run, epoch) from a checkpoint label like `ft-volume-epoch003` (None when it has none).

    Only for compare outputs written before radlens recorded each checkpoint's run and epoch
    (report.checkpoints.checkpoint_order reads the record first); kept so old files still
    draw their trajectory."""
    m = re.search(r"^(.*?)[-_.]?epoch[-_]?(\d+)", str(label))
    return (m.group(1), int(m.group(2))) if m else None
