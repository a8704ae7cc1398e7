"""The READII negative-control pipeline on the phantom cohort, shared by
tests/test_negative_controls.py and benchmarks/negative_controls.py (issue 28).

`make_runs` runs the CLI end to end: `synth [--texture]`, `perturb --negative-control
shuffled-roi --include-original` and `randomized-roi` (one replicate, no other
perturbation), `extract-radiomics` (original image, no resampling, bin width 25, six
families) and `embed` (the fixed in-plane filter bank `stability_factories.texture_bank_2d`
on the phantom's own grid, a 32 x 32 x 8 box) of the originals and both controls. Then per
feature family:

- `family_rho`: mean Spearman |rho| between the family's features and the embedding
  dimensions over all pairs (`lens.correlate`, what `radlens correlate` computes);
- `family_r2`: decodability, the mean over the family's features of the held-out R^2
  (negative values counted as 0: a feature no decoder predicts) of the lens's ridge decoder
  (`lens.decoder.ridge_gcv`, alpha by generalised cross-validation) from the z-scored
  embeddings, k-fold cross-validated (pooled out-of-fold predictions);
- `first_order_change`: relative differences of the first-order features between two runs.
"""

from __future__ import annotations

import os

import numpy as np

PARAMS = """imageType:
  Original: {}
featureClass:
  firstorder: []
  glcm: []
  glszm: []
  glrlm: []
  ngtdm: []
  gldm: []
setting:
  binWidth: 25
  label: 1
  preCrop: true
"""
ENCODER = "tests.stability_factories:texture_bank_2d"
BOX = ["--crop", "32,32,8", "--spacing", "0.5,0.5,3", "--device", "cpu"]  # the phantom's own grid
TEXTURE_FAMILIES = ("glcm", "gldm", "glrlm", "glszm", "ngtdm")


def run_cli(*args) -> None:
    from typer.testing import CliRunner

    from radlens_cli.main import app

    r = CliRunner().invoke(app, ["-q", *map(str, args)], catch_exceptions=False)
    if r.exit_code != 0:
        raise AssertionError(f"radlens {' '.join(map(str, args))} failed:\n{r.stderr}")


def make_runs(d: str, cases: int, size: str, texture: bool, seed: int, jobs: int,
              modalities: str = "t2,adc", embed_randomized: bool = True) -> dict:
    """The three runs (original, shuffled-roi, randomized-roi): {name: (radiomics, embeddings)}
    case tables, rows sorted by subject (randomized-roi's embeddings None unless
    `embed_randomized`)."""
    import pandas as pd

    from radlens_cli.io.tables import read_table

    with open(os.path.join(d, "params.yaml"), "w") as fh:
        fh.write(PARAMS)
    run_cli("synth", "-o", f"{d}/ph", "--cases", cases, "--size", size, "--seed", seed,
            *(["--texture"] if texture else []))
    common = ["--modalities", modalities, "--mask", "gland", "--replicates", "1", "--seed", seed]
    run_cli("perturb", f"{d}/ph/cohort.csv", *common, "--negative-control", "shuffled-roi", "--include-original",
            "-o", f"{d}/shuffled")
    run_cli("perturb", f"{d}/ph/cohort.csv", *common, "--negative-control", "randomized-roi", "-o", f"{d}/randomized")
    man = pd.read_csv(f"{d}/shuffled/cohort.csv")
    man[man.replicate == 0].to_csv(f"{d}/shuffled/original.csv", index=False)
    man[man.replicate == 1].to_csv(f"{d}/shuffled/control.csv", index=False)
    out = {}
    for name, manifest in (("original", f"{d}/shuffled/original.csv"), ("shuffled-roi", f"{d}/shuffled/control.csv"),
                           ("randomized-roi", f"{d}/randomized/cohort.csv")):
        run_cli("extract-radiomics", manifest, "--modalities", modalities, "--mask", "gland", "--params",
                f"{d}/params.yaml", "-j", jobs, "-o", f"{d}/rad_{name}.h5")
        rad = by_subject(read_table(f"{d}/rad_{name}.h5"))
        emb = None
        if name != "randomized-roi" or embed_randomized:
            run_cli("embed", manifest, "--modalities", modalities, "--mask", "gland", "--encoder", ENCODER, *BOX,
                    "-o", f"{d}/emb_{name}.h5")
            emb = by_subject(read_table(f"{d}/emb_{name}.h5"))
        out[name] = (rad, emb)
    return out


def subjects(table) -> np.ndarray:
    """Each row's subject: its case_id without `_r<k>`."""
    return np.array([c.rsplit("_r", 1)[0] for c in table.case_id])


def by_subject(table):
    """The table's rows in the order of their subject."""
    return table.take(np.argsort(subjects(table), kind="stable"))


def families(columns) -> np.ndarray:
    """`t2/original_glcm_Contrast` -> `glcm`."""
    return np.array([c.split("/", 1)[1].split("_")[1] for c in columns])


def family_rho(rad, emb) -> dict[str, float]:
    """Mean Spearman |rho| over (feature, embedding dimension) pairs, per family."""
    from radlens_cli.lens import correlate as lc

    res = lc.correlate(emb.values, rad.values)
    fam = families(rad.columns)[res.keep_y]
    a = np.abs(res.rho).mean(axis=0)
    return {f: float(a[fam == f].mean()) for f in np.unique(fam)}


def family_r2(rad, emb, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Mean over the family's features of the cross-validated ridge decoder R^2, clipped at 0."""
    from radlens_cli.lens.decoder import r2_score, ridge_gcv

    X, Y = np.asarray(emb.values, np.float64), np.asarray(rad.values, np.float64)
    ok = np.isfinite(Y).all(axis=0) & (Y.std(axis=0) > 0)
    Y, fam = Y[:, ok], families(rad.columns)[ok]
    fold = np.random.default_rng(seed).permutation(len(X)) % folds
    pred = np.empty_like(Y)
    for k in range(folds):
        tr, te = fold != k, fold == k
        mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        _, _, dec = ridge_gcv((X[tr] - mu) / sd, Y[tr], intercept=True)
        pred[te] = ((X[te] - mu) / sd) @ dec.theta.T + dec.bias
    r2 = np.clip(r2_score(pred, Y), 0.0, None)
    return {f: float(r2[fam == f].mean()) for f in np.unique(fam)}


def first_order_change(a, b) -> np.ndarray:
    """Relative differences of the first-order features between two runs (all cases)."""
    fo = families(a.columns) == "firstorder"
    x, y = np.asarray(a.values[:, fo], np.float64), np.asarray(b.values[:, fo], np.float64)
    return np.abs(x - y) / np.maximum(np.abs(x), 1e-12)
