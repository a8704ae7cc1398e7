"""Cohort generators for the lens's validity checks (tests/lens and benchmarks/validity.py).

A cohort has n cases with latent factors U; radiomic columns over 3 modalities x 6
families x 2 image types are driven by one latent each (affine or skewed, plus their own
noise the embeddings never see), or are pure noise. Embeddings are a random linear mix of
some latents plus isotropic noise. Three latent sets: A (in every checkpoint), `down`
(in the reference, fading in the checkpoints: lost) and `up` (absent from the reference,
growing in the checkpoints: gained).

- `null_transforms` gives information-preserving versions of the reference embeddings
  (rotation, dimension permutation, scale, shift, their combination, duplicated dims).
- `planted` gives a fine-tuned checkpoint that keeps A, loses `down`, gains `up`.
- `trajectory` gives checkpoints along which `up` grows and `down` fades gradually.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.io.tables import CaseTable

MODALITIES = ("t2", "adc", "dwi")
FAMILIES = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm")
IMAGE_TYPES = ("original", "wavelet-LLH")


@dataclass
class Cohort:
    rad: CaseTable
    U: np.ndarray
    sets: dict          # "A", "down", "up" -> latent indices
    columns_of: dict    # "A", "down", "up", "noise" -> column names
    ids: np.ndarray
    split: np.ndarray
    d: int
    emb_noise: float
    rng: np.random.Generator
    mix: dict = field(default_factory=dict)

    def embed(self, strengths: dict, mix_key: str = "pre") -> CaseTable:
        """Embeddings carrying latent set s with weight strengths[s] (mixing matrix per key,
        drawn once and reused, so checkpoints of one run share their basis)."""
        idx = np.concatenate([self.sets[s] for s in ("A", "down", "up")])
        if mix_key not in self.mix:
            self.mix[mix_key] = self.rng.normal(size=(len(idx), self.d)) / np.sqrt(len(idx))
        w = np.concatenate([np.full(len(self.sets[s]), strengths.get(s, 0.0))
                            for s in ("A", "down", "up")])
        noise = self.emb_noise * self.rng.normal(size=(len(self.ids), self.d))
        X = (self.U[:, idx] * w) @ self.mix[mix_key] + noise
        return CaseTable(self.ids, X, [f"emb_{j:04d}" for j in range(self.d)], split=self.split)

    def pre(self) -> CaseTable:
        return self.embed({"A": 1.0, "down": 1.0, "up": 0.0}, "pre")


def cohort(n=600, d=64, seed=0, n_A=8, n_down=4, n_up=4, per_latent=4, n_noise=20,
           emb_noise=0.3, frac=(0.7, 0.1)) -> Cohort:
    rng = np.random.default_rng(seed)
    L = n_A + n_down + n_up
    U = rng.normal(size=(n, L))
    sets = {"A": np.arange(n_A), "down": np.arange(n_A, n_A + n_down),
            "up": np.arange(n_A + n_down, L)}
    which = {int(i): s for s, idx in sets.items() for i in idx}
    cols, vals, meta = [], [], {"modality": [], "image_type": [], "family": [], "feature": []}
    columns_of = {"A": [], "down": [], "up": [], "noise": []}
    slots = [(m, f, t) for t in IMAGE_TYPES for f in FAMILIES for m in MODALITIES]
    order = rng.permutation(len(slots) * ((L * per_latent + n_noise) // len(slots) + 1))
    k = 0
    for li in list(range(L)) + [None] * n_noise:
        for r in range(per_latent if li is not None else 1):
            m, f, t = slots[order[k] % len(slots)]
            name = f"{m}/{t}_{f}_F{k:03d}"
            if li is None:
                v = 3.0 + rng.normal(size=n)
                columns_of["noise"].append(name)
            else:
                u = U[:, li] + 0.3 * rng.normal(size=n)
                # half affine, half skewed (log-normal-like) features, scales 0.1..1000
                v = (np.exp(0.6 * u) if r % 2 else 5.0 + u) * 10.0 ** rng.uniform(-1, 3)
                columns_of[which[li]].append(name)
            cols.append(name)
            vals.append(v)
            for key, val in zip(("modality", "image_type", "family", "feature"), (m, t, f, f"F{k:03d}")):
                meta[key].append(val)
            k += 1
    ids = np.array([f"case{i:04d}" for i in range(n)], dtype=object)
    n_tr, n_va = int(frac[0] * n), int(frac[1] * n)
    split = np.array(["train"] * n_tr + ["val"] * n_va + ["test"] * (n - n_tr - n_va), dtype=object)
    split = split[rng.permutation(n)]
    rad = CaseTable(ids, np.stack(vals, axis=1), cols, split=split,
                    column_meta={k2: np.array(v, dtype=object) for k2, v in meta.items()})
    return Cohort(rad, U, sets, columns_of, ids, split, d, emb_noise, rng)


def null_transforms(X: CaseTable, seed: int = 0) -> dict[str, CaseTable]:
    """Information-preserving versions of X (same cases, split, column names where d kept)."""
    rng = np.random.default_rng(seed)
    V = X.values
    d = V.shape[1]
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    perm = rng.permutation(d)
    shift = rng.normal(size=d)
    k = max(1, d // 8)
    out = {"rotation": V @ Q, "permutation": V[:, perm], "scale": 1.3 * V, "shift": V + 0.2 + shift,
           "combined": 0.7 * (V @ Q)[:, perm] + shift,
           "anisotropic": V * np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=d)),
           "duplicated": np.concatenate([V, V[:, rng.choice(d, k, replace=False)]], axis=1)}
    return {name: CaseTable(X.case_id, v, [f"emb_{j:04d}" for j in range(v.shape[1])],
                            split=X.split) for name, v in out.items()}


def precision_at(df, columns, k=10, by="rank_gain"):
    """Fraction of the k best-ranked rows (by rank_gain or rank_loss) that are in `columns`."""
    top = df.dropna(subset=[by]).sort_values(by)["column"].to_numpy()[:k]
    return float(np.mean([c in set(columns) for c in top])) if len(top) else 0.0
