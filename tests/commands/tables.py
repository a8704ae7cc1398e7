"""Small case tables with closed-form answers for the per-command tests."""

from __future__ import annotations

import numpy as np

from radlens_cli.io.tables import CaseTable, write_table

RAD_COLUMNS = [f"{m}/original_{fam}_F{k}" for m in ("t2", "adc") for fam in ("firstorder", "glcm") for k in range(2)]


def emb_rad(folder, n=40, d=5, seed=0, shift=0.0) -> dict:
    """emb.h5 (n x d) and rad.h5 (n x 8) where rad column 0 is exp(emb_0) (Spearman rho
    exactly 1), column 3 is -emb_2**3 (rho exactly -1) and the others are noise. `shift`
    moves the noise columns, so a second pair differs only there."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"case{i:03d}" for i in range(n)], dtype=object)
    split = np.array((["train"] * 7 + ["val"] + ["test"] * 2) * (n // 10 + 1), dtype=object)[:n]
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, len(RAD_COLUMNS))) + shift
    y[:, 0] = np.exp(x[:, 0])
    y[:, 3] = -x[:, 2] ** 3
    write_table(CaseTable(ids, x, [f"emb_{j}" for j in range(d)], split), str(folder / "emb.h5"))
    write_table(CaseTable(ids[::-1], y[::-1], list(RAD_COLUMNS), split[::-1]), str(folder / "rad.h5"))
    return {"emb": folder / "emb.h5", "rad": folder / "rad.h5"}
