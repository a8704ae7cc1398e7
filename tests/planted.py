"""The planted cohorts of the tests, in one place.

planted_cohort: embeddings before/after fine-tuning and radiomics with planted lost (`down`),
gained (`up`), kept (`A`) and noise columns -- the lens's cohort (the session's `planted`
and `lens_run` fixtures in tests/conftest.py, the Python API's example, fit-share's tests).
planted_pair: one small embedding table and radiomics table with two planted
correlations and constant columns (correlate, cka, probe-like tests).
tests/lens/generators.py holds the validity checks' larger cohorts (nulls, trajectories).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens_cli.io.tables import CaseTable


@dataclass
class Planted:
    emb_pre: CaseTable
    emb_ft: CaseTable
    rad: CaseTable
    A: list          # columns encoded by both
    down: list       # encoded by pre only (lost by fine-tuning)
    up: list         # encoded by ft only (gained)
    noise: list      # encoded by neither


def planted_cohort(n=600, n_train=420, n_val=60, d=128, seed=0, n_A=10, n_down=5, n_up=5,
                   per_latent=3, n_noise=30) -> Planted:
    """Pre embeddings carry latents A + S_down, fine-tuned ones A + S_up; every latent
    drives `per_latent` radiomic columns (correlated features), plus pure-noise columns.
    Families: A glcm/firstorder, S_down glszm, S_up ngtdm, noise gldm."""
    rng = np.random.default_rng(seed)
    n_lat = n_A + n_down + n_up
    U = rng.normal(size=(n, n_lat))
    cols, fam, groups = [], [], {"A": [], "down": [], "up": [], "noise": []}
    vals = []
    k = 0
    for li in range(n_lat):
        g = "A" if li < n_A else ("down" if li < n_A + n_down else "up")
        family = {"A": "glcm" if li % 2 else "firstorder", "down": "glszm", "up": "ngtdm"}[g]
        for r in range(per_latent):
            mod = "t2" if k % 2 == 0 else "adc"
            it = "original" if k % 3 else "wavelet-LLH"
            name = f"{mod}/{it}_{family}_F{k:03d}"
            cols.append(name)
            groups[g].append(name)
            # each column: affine transform of its latent plus its own noise (not in the embedding)
            vals.append(7.0 + 3.0 * (U[:, li] + 0.25 * rng.normal(size=n)) * (1 + r))
            k += 1
    for _ in range(n_noise):
        mod = "t2" if k % 2 == 0 else "adc"
        name = f"{mod}/original_gldm_F{k:03d}"
        cols.append(name)
        groups["noise"].append(name)
        vals.append(2.0 + rng.normal(size=n))
        k += 1
    R = np.stack(vals, axis=1)
    ids = np.array([f"case{i:04d}" for i in range(n)], dtype=object)
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val),
                     dtype=object)
    split = split[rng.permutation(n)]
    iA = np.arange(n_A)
    idown = np.arange(n_A, n_A + n_down)
    iup = np.arange(n_A + n_down, n_lat)

    def embed(idx):
        M = rng.normal(size=(len(idx), d)) / np.sqrt(len(idx))
        return U[:, idx] @ M + 0.05 * rng.normal(size=(n, d))

    emb_cols = [f"e{j}" for j in range(d)]
    pre = CaseTable(ids, embed(np.r_[iA, idown]), emb_cols, split=split)
    ft = CaseTable(ids, embed(np.r_[iA, iup]), emb_cols, split=split)
    meta = {"modality": np.array([c.split("/")[0] for c in cols], dtype=object),
            "image_type": np.array([c.split("/")[1].split("_")[0] for c in cols], dtype=object),
            "family": np.array([c.split("_")[1] for c in cols], dtype=object),
            "feature": np.array([c.split("_")[2] for c in cols], dtype=object)}
    rad = CaseTable(ids, R, cols, split=split, column_meta=meta)
    return Planted(pre, ft, rad, groups["A"], groups["down"], groups["up"], groups["noise"])


RAD_COLUMNS = [f"{m}/{it}_{fam}_F{k}" for m in ("t2", "adc") for it in ("original", "wavelet-LLH")
               for fam in ("firstorder", "glcm") for k in range(2)]




def planted_pair(n=60, d=8, seed=0, prefix="case"):
    """Embeddings (n, d) and radiomics (n, 16) where rad col 0 follows emb_0, col 5 follows -emb_3;
    emb_7 and rad col 9 are constant."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{prefix}{i:03d}" for i in range(n)], dtype=object)
    split = np.array((["train"] * 7 + ["val"] + ["test"] * 2) * (n // 10 + 1), dtype=object)[:n]
    x = rng.normal(size=(n, d))
    x[:, d - 1] = 2.5
    y = rng.normal(size=(n, len(RAD_COLUMNS)))
    y[:, 0] = 2 * x[:, 0] + 0.2 * rng.normal(size=n)
    y[:, 5] = -x[:, 3] + 0.2 * rng.normal(size=n)
    y[:, 9] = 1.0
    emb = CaseTable(ids, x, [f"emb_{j}" for j in range(d)], split)
    rad = CaseTable(ids, y, list(RAD_COLUMNS), split)
    return emb, rad
