"""Fixture inputs for `radlens report`, generated with numpy in the formats the other
commands write (compare's DELTA.csv, stats' TABLE.csv, a radiomics case table, and the
optional correlate-summary / cka / probe / finetune metrics CSVs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

MODALITIES = ("t2", "dwi", "adc")
FAMILIES = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape")
IMAGE_TYPES = ("original", "wavelet-LLH")


def make_inputs(folder, seed=0, n_cases=30, ci=True, perm=True, sep="/", fmt="old", checkpoints=("ft",),
                undecodable=0.2):
    """Write the report's inputs into `folder`; returns a dict role -> path (str).

    fmt "old": DELTA.csv as radlens wrote it before the calibrated lens (no checkpoint,
    decodable, test columns; a bare ci_low/ci_high of the --rank-by statistic); "new": the
    contract of the calibrated, multi-checkpoint compare (see write_delta)."""
    from radlens_cli import provenance
    from radlens_cli.io.tables import CaseTable, write_table

    rng = np.random.default_rng(seed)
    meta = {"modality": [], "image_type": [], "family": [], "feature": []}
    columns = []
    for m in MODALITIES:
        for it in IMAGE_TYPES:
            for f in FAMILIES:
                if f == "shape" and it != "original":
                    continue
                for k in range(3):
                    feat = {"shape": ("VoxelVolume", "MeshVolume", "Sphericity"),
                            "firstorder": ("Energy", "Mean", "Kurtosis")}.get(f, (f"F{k}a", f"F{k}b", f"F{k}c"))[k]
                    columns.append(f"{m}/{it}_{f}_{feat}")
                    for key, v in zip(meta, (m, it, f, feat)):
                        meta[key].append(v)
    p = len(columns)
    ids = np.array([f"case{i:03d}" for i in range(n_cases)], dtype=object)
    split = np.array((["train"] * 7 + ["val"] + ["test"] * 2) * (n_cases // 10 + 1), dtype=object)[:n_cases]
    attrs = provenance.build("extract-radiomics", params={"modalities": list(MODALITIES), "mask": "gland"})
    table = CaseTable(ids, rng.normal(size=(n_cases, p)), columns, split,
                      {k: np.array(v, dtype=object) for k, v in meta.items()})
    paths = {"radiomics": str(folder / "radiomics.h5")}
    write_table(table, paths["radiomics"], attrs=attrs)

    paths = {**paths, **write_delta(folder, columns, meta, rng, ci=ci, perm=perm, fmt=fmt,
                                    checkpoints=checkpoints, undecodable=undecodable)}

    rows = []
    blocks = list(checkpoints) if fmt == "new" else [None]
    groups = [("family", f) for f in FAMILIES] + [("image_type", t) for t in IMAGE_TYPES] + \
        [("modality", m) for m in MODALITIES] + [("modality_family", f"{m}{sep}{f}") for m in MODALITIES for f in FAMILIES]
    for ck, (gb, g) in ((ck, grp) for ck in blocks for grp in groups):
        pv = float(rng.uniform(0, 0.02) if rng.random() < 0.4 else rng.uniform(0, 1))
        stars = "***" if pv < 0.001 else "**" if pv < 0.01 else "*" if pv < 0.05 else ""
        rows.append({**({"checkpoint": ck} if ck else {}), "group_by": gb, "group": g, "n_features": int(rng.integers(3, 30)),
                     "mse_pre": rng.uniform(0.1, 0.7), "r2_pre": rng.uniform(0.2, 0.9),
                     "mse_ft": rng.uniform(0.1, 0.7), "r2_ft": rng.uniform(0.2, 0.9),
                     "wilcoxon_p": pv, "stars": stars, "q_bh": min(1.0, pv * 3)})
    paths["stats"] = str(folder / "table.csv")
    pd.DataFrame(rows).to_csv(paths["stats"], index=False)

    cs = pd.DataFrame([{"modality": m, "family": f, "n_columns": 6, "deep_pre": int(rng.integers(0, 40)),
                        "deep_ft": int(rng.integers(0, 40)), "pairs_pre": int(rng.integers(0, 99)),
                        "pairs_ft": int(rng.integers(0, 99))} for m in MODALITIES for f in FAMILIES[:3]])
    paths["correlate_summary"] = str(folder / "corr_summary.csv")
    cs.to_csv(paths["correlate_summary"], index=False)
    paths["cka"] = str(folder / "cka.csv")
    pd.DataFrame([{"a": "emb_pre.h5", "b": "emb_ft.h5", "kernel": "linear", "debiased": True,
                   "n_cases": n_cases, "cka": float(rng.uniform()), "ci_low": 0.1, "ci_high": 0.9}]).to_csv(
        paths["cka"], index=False)
    paths["probe"] = str(folder / "probe.csv")
    pd.DataFrame([{"table": t, "model": mdl, "accuracy_mean": float(rng.uniform()), "accuracy_sd": 0.05,
                   "command": "radlens probe " + " ".join(["x"] * 40)}
                  for t in ("radiomics", "pre", "ft") for mdl in ("logistic", "forest")]).to_csv(paths["probe"], index=False)
    paths["metrics"] = str(folder / "ft metrics.csv")
    # finetune --metrics: one row per epoch and split, then the final test row
    rows = [{"epoch": e, "split": sp, "n_cases": n, "loss": float(rng.uniform(0.2, 1.5)),
             "qwk": float(rng.uniform(0, 1)), "lr": 1e-3 * e / 5}
            for e in range(1, 6) for sp, n in (("train", 21), ("val", 3))]
    rows.append({"epoch": 5, "split": "test", "n_cases": 6, "loss": 0.9, "qwk": 0.4, "lr": np.nan})
    pd.DataFrame(rows).to_csv(paths["metrics"], index=False)
    return paths


def write_delta(folder, columns, meta, rng, ci=True, perm=True, fmt="old", checkpoints=("ft",),
                undecodable=0.2, name="delta.csv"):
    """DELTA.csv in the old or the new (contract) layout; `undecodable`: share of features with
    R² ≤ 0 in both stages."""
    p = len(columns)
    frames = []
    for ck in (checkpoints if fmt == "new" else checkpoints[:1]):
        ipre = rng.gamma(2.0, 0.5, p)
        ift = ipre + rng.normal(0, 0.3, p)
        r2pre = rng.uniform(0.05, 0.9, p)
        r2ft = np.clip(r2pre + rng.normal(0, 0.1, p), 0.01, 1)
        bad = rng.random(p) < undecodable
        r2pre[bad] = rng.uniform(-3, -0.01, bad.sum())
        r2ft[bad] = rng.uniform(-3, -0.01, bad.sum())
        delta = pd.DataFrame({"column": columns, **meta, "r2_pre": r2pre, "r2_ft": r2ft, "delta_r2": r2ft - r2pre,
                              "importance_pre": ipre, "importance_ft": ift, "delta_importance": ift - ipre})
        if fmt == "new":
            delta.insert(0, "checkpoint", ck)
            delta["decodable"] = ~bad
            stat = delta["delta_r2"].where(~bad)
            delta["rank_gain"] = (-stat).rank(method="first").astype("Int64")
            delta["rank_loss"] = stat.rank(method="first").astype("Int64")
            delta["p_null"] = rng.uniform(0, 1, p) ** 3
            delta["q_bh"] = np.minimum(1, delta["p_null"] * 4)
            delta["test"] = "rotation null of delta_r2"
            if ci:
                for s in ("delta_r2", "delta_importance"):
                    half = rng.uniform(0.02, 0.2, p)
                    delta[f"{s}_ci_low"], delta[f"{s}_ci_high"] = delta[s] - half, delta[s] + half
        else:
            delta["rank_gain"] = (-delta["delta_importance"]).rank(method="first").astype(int)
            delta["rank_loss"] = delta["delta_importance"].rank(method="first").astype(int)
            if ci:
                half = rng.uniform(0.05, 0.3, p)
                delta["ci_low"], delta["ci_high"] = delta["delta_importance"] - half, delta["delta_importance"] + half
            if perm:
                delta["p_perm"] = rng.uniform(0, 1, p)
                delta["q_bh"] = np.minimum(1, delta["p_perm"] * 2)
        frames.append(delta)
    out = str(folder / name)
    pd.concat(frames, ignore_index=True).to_csv(out, index=False)
    return {"compare": out}


@pytest.fixture
def report_inputs(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    return make_inputs(folder)
