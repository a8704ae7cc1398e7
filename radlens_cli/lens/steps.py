"""Table-level steps of the lens: join embeddings with radiomics, fit share, decode.

These take and return plain objects (CaseTable, ShareModel, DecodeResult) so a notebook
can run the method without the CLI; the commands only add file handling and messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage, RadlensError, check_choice
from radlens_cli.io.tables import CaseTable, align_cases
from radlens_cli.lens.align import ALIGNMENTS, fit_alignment
from radlens_cli.lens.checks import embedding_params, require_same_preprocessing
from radlens_cli.lens.decoder import Decoder, RIDGE_FALLBACK, choose_ridge, fit_decoder, r2_score, ridge_gcv
from radlens_cli.lens.power import DEFAULT_HIDDEN, RULE, assess, recommended_hidden
from radlens_cli.lens.scaling import SCALES, fit_scaler
from radlens_cli.lens.share import (ACTIVATIONS, METHOD_ALIASES, METHODS, REDUCTIONS, ShareModel, paper_grid,
                                    train_share)
from radlens_cli.names import table_column_meta



@dataclass
class Joined:
    """Embeddings and radiomics of the same cases, in the embedding table's order.

    The radiomics stay in the table's own array (no reordered copy of a possibly
    multi-GB matrix); `radiomics(rows, cols)` gathers what a step needs in one copy.
    """

    case_id: np.ndarray
    X: np.ndarray            # (n, d) embeddings
    rad_values: np.ndarray   # the radiomics table's values, table order
    rad_rows: np.ndarray     # (n,) row of each joined case in rad_values
    columns: list[str]
    split: np.ndarray
    meta: dict
    n_missing: int = 0

    def radiomics(self, rows, cols=None) -> np.ndarray:
        """Raw radiomics (float64, a fresh array) of joined rows `rows`, columns `cols`."""
        out = np.take(self.rad_values, self.rad_rows[rows], axis=0)
        if cols is not None and not (len(cols) == out.shape[1]
                                     and np.array_equal(cols, np.arange(len(cols)))):
            out = np.take(out, cols, axis=1)
        return out


def join(emb: CaseTable, rad: CaseTable, allow_missing: bool = False,
         embedding_columns: list[str] | None = None) -> Joined:
    """Join on case_id; embeddings must be finite; the split comes from either table."""
    ia, ib = align_cases(emb, rad, allow_missing, names=("embeddings", "radiomics"))
    n_missing = emb.n_cases + rad.n_cases - 2 * len(ia)
    X = emb.values
    if embedding_columns is not None:
        pos = {c: j for j, c in enumerate(emb.columns)}
        missing = [c for c in embedding_columns if c not in pos]
        if missing or len(embedding_columns) != len(emb.columns):
            raise RadlensError(
                f"{emb.path}: embedding columns do not match the share model's "
                f"({len(emb.columns)} vs {len(embedding_columns)} dims"
                + (f"; missing {', '.join(missing[:3])}" if missing else "") + ")")
        order = np.array([pos[c] for c in embedding_columns])
        X = X[:, order] if not np.array_equal(order, np.arange(len(order))) else X
    X = X[ia]
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        names = embedding_columns if embedding_columns is not None else emb.columns
        raise RadlensError(f"{emb.path}: non-finite embedding value at case {emb.case_id[ia[i]]}, "
                           f"dim {j} (column {names[j]}; {int(bad.sum())} in all)")
    split = _split(emb, rad, ia, ib)
    meta = table_column_meta(rad.columns, rad.column_meta)
    return Joined(case_id=emb.case_id[ia], X=X, rad_values=rad.values, rad_rows=ib,
                  columns=list(rad.columns), split=split, meta=meta, n_missing=n_missing)


def _split(emb: CaseTable, rad: CaseTable, ia, ib) -> np.ndarray:
    se = None if emb.split is None else emb.split[ia]
    sr = None if rad.split is None else rad.split[ib]
    if se is None and sr is None:
        raise RadlensError(f"neither {emb.path} nor {rad.path} has a `split` dataset; "
                           f"give the manifest a split column (train/val/test)")
    if se is not None and sr is not None:
        diff = np.flatnonzero(se != sr)
        if diff.size:
            i = diff[0]
            raise RadlensError(f"split differs between {emb.path} and {rad.path} for case "
                               f"{emb.case_id[ia[i]]} ({se[i]} vs {sr[i]}; {diff.size} in all)")
    return sr if sr is not None else se


def _said_missing(j: Joined, warn) -> None:
    if j.n_missing and warn:
        warn(ParameterMessage(f"{{allow_missing}}: using the {len(j.case_id)} case(s) present in both inputs "
                              f"({j.n_missing} case row(s) present in only one left out)", "allow_missing"))


def require_split(j: Joined, name: str, what: str, minimum: int = 1) -> np.ndarray:
    mask = j.split == name
    if mask.sum() < minimum:
        have = ", ".join(f"{s}={c}" for s, c in zip(*np.unique(j.split.astype(str), return_counts=True)))
        raise RadlensError(f"no `{name}` cases for {what} (need >= {minimum}; splits: {have})")
    return mask


# ---------------------------------------------------------------- fit-share

def method_defaults(method: str) -> dict:
    """What each method means: the calibrated lens (default) or the paper's exact method."""
    method = METHOD_ALIASES.get(method, method)
    check_choice(method, METHODS, "method")
    if method == "symmetric":   # lens/resplit.py: own shares per checkpoint, re-splits
        return {"scale": "zscore", "intercept": True, "align": "none", "rank_by": "delta_r2_clipped",
                "ridge": "gcv", "share_fraction": None}
    if method == "paper":
        return {"scale": "minmax", "intercept": False, "align": "none",
                "rank_by": "delta_importance", "ridge": "none", "share_fraction": 1.0}
    return {"scale": "zscore", "intercept": True, "align": "similarity", "rank_by": "delta_r2",
            "ridge": "gcv", "share_fraction": 0.5}


def fit_share(emb: CaseTable, rad: CaseTable, hidden: int | None = None, l1: float = 1e-6,
              l2: float = 1e-5, sweep: bool = False, epochs: int | None = None,
              lr: float | None = None,
              scale: str | None = None, activation: str = "relu", batch_size: int = 256,
              seed: int = 0, device: str = "cpu", allow_missing: bool = False,
              progress=None, warn=None, method: str = "symmetric",
              loss_reduction: str = "mean", seeds: int = 1,
              share_fraction: float | None = None, grid=None, n_resplits: int | None = None,
              test_fraction: float | None = None) -> ShareModel:
    """Train the share projection on the train split of embeddings `emb` joined with
    radiomics `rad` (case tables); with `sweep` (the paper's (l1, l2) grid) or a `grid`,
    select on val L1. progress(): one call per epoch; warn(message): where warnings go.

    method "symmetric" (the default, lens/resplit.py) records the re-split protocol
    (n_resplits, share_fraction 0.4, test_fraction 0.3 of the train and test cases) and
    fits the reference's own share on every re-split (epochs 150, lr 6e-3, full batch);
    "calibrated-0.2" (stored as "calibrated") and "paper" fit one share (epochs 200,
    lr 1e-3, batch_size).

    Also keeps what the decoders of every checkpoint need to be comparable: the
    pre-trained train embeddings (the alignment target) and one ridge alpha for all
    checkpoints (calibrated: generalised cross-validation on the pre-trained train cases; paper: none,
    or the under-determined fallback computed once here).
    hidden=None (the default, as fit-share's): h from the cohort,
    lens.power.recommended_hidden(decoder train cases)."""
    method = METHOD_ALIASES.get(method, method)
    check_choice(method, METHODS, "method")
    check_choice(loss_reduction, REDUCTIONS, "loss_reduction")
    if scale is not None:
        check_choice(scale, SCALES, "scale")
    check_choice(activation, ACTIVATIONS, "activation")
    if sweep:
        split = rad.split if rad.split is not None else emb.split
        if split is None or not (split == "val").any():
            raise ParameterError("{sweep} selects on the `val` split, but there are no val cases",
                                 "sweep", exit_code=EXIT_DATA)
        grid = paper_grid()
    if share_fraction is not None and not 0.0 < share_fraction <= 1.0:
        raise ParameterError("{share_fraction} must be in (0, 1]", "share_fraction")
    if seeds < 1:
        raise ParameterError("{seeds} must be at least 1", "seeds")
    reduction = loss_reduction
    md = method_defaults(method)
    if method == "symmetric":
        from radlens_cli.lens import resplit  # resplit builds on this module (DecodeResult, join): loaded when a symmetric share is fitted

        if int(seeds) != 1:
            raise ParameterError("{seeds} applies to the calibrated-0.2 and paper methods; the "
                                 "symmetric lens repeats its fits over {n_resplits} re-splits",
                                 "seeds", "n_resplits")
        if n_resplits is not None and n_resplits < 2:
            raise ParameterError("{n_resplits} must be at least 2", "n_resplits")
        if test_fraction is not None and not 0.0 < test_fraction < 1.0:
            raise ParameterError("{test_fraction} must be in (0, 1)", "test_fraction")
        return resplit.fit_share_symmetric(
            emb, rad, hidden=hidden, l1=l1, l2=l2, grid=grid, epochs=epochs, lr=lr,
            activation=activation, seed=seed, device=device, allow_missing=allow_missing,
            progress=progress, warn=warn, reduction=reduction,
            n_resplits=resplit.N_RESPLITS if n_resplits is None else int(n_resplits),
            share_fraction=share_fraction, test_fraction=test_fraction,
            scale=scale or md["scale"])
    if n_resplits is not None or test_fraction is not None:
        raise ParameterError("{n_resplits} and {test_fraction} apply to the symmetric method",
                             "n_resplits", "test_fraction")
    epochs = 200 if epochs is None else epochs
    lr = 1e-3 if lr is None else lr
    scale = scale or md["scale"]
    frac = md["share_fraction"] if share_fraction is None else float(share_fraction)
    j = join(emb, rad, allow_missing)
    _said_missing(j, warn)
    tr = require_split(j, "train", "fitting share", minimum=2)
    # share on a seeded part S of the train cases, the decoders on the rest D (frac < 1)
    tr_idx = np.flatnonzero(tr)
    S = np.ones(len(tr_idx), dtype=bool)
    if frac < 1.0:
        n_s = int(round(frac * len(tr_idx)))
        if n_s < 2 or len(tr_idx) - n_s < 2:
            raise RadlensError(f"{len(tr_idx)} train case(s): too few to fit share on {frac:g} of "
                               f"them and the decoders on the rest")
        order = np.argsort(j.case_id[tr_idx].astype(str), kind="stable")
        pick = order[np.random.default_rng(seed).permutation(len(order))[:n_s]]
        S = np.zeros(len(tr_idx), dtype=bool)
        S[pick] = True
    n_decoder = int((~S).sum()) if frac < 1.0 else int(S.sum())
    hidden_rule = hidden is None
    if hidden_rule:   # the small-sample rule (lens/power.py): two decoder cases per hidden unit
        hidden = recommended_hidden(n_decoder)
    va = j.split == "val"
    if grid is not None and len(grid) > 1 and not va.any():
        raise RadlensError("the (l1, l2) grid is selected on the `val` split, but there are no val cases")
    Rtr = j.radiomics(tr)
    scaler = fit_scaler(Rtr, j.columns, scale)
    if not scaler.columns:
        raise RadlensError(f"{rad.path}: every radiomic column is constant or non-finite on train")
    pos = {c: k for k, c in enumerate(j.columns)}
    keep = np.array([pos[c] for c in scaler.columns]) if scaler.dropped else np.arange(len(j.columns))
    Rtr = scaler.transform(Rtr[:, keep] if scaler.dropped else Rtr, out=True)
    Xv, Rv = j.X[va], scaler.transform(j.radiomics(va, keep), out=True)
    fin = np.isfinite(Rv).all(axis=1)
    if not fin.all() and warn:
        warn(f"{int((~fin).sum())} val case(s) with non-finite radiomics left out of "
             f"validation: {', '.join(map(str, j.case_id[va][~fin][:5]))}")
    Xv, Rv = Xv[fin], Rv[fin]
    grid = list(grid) if grid is not None else [(l1, l2)]
    fit = train_share(j.X[tr_idx[S]], Rtr[S], Xv if len(Xv) else None, Rv if len(Xv) else None,
                      grid=grid,
                      hidden=hidden, activation=activation, epochs=epochs, lr=lr,
                      batch_size=batch_size, seed=seed, device=device, progress=progress,
                      reduction=reduction)
    b = fit.best
    meta = {k: np.asarray(v, dtype=object)[keep] for k, v in j.meta.items()}
    sweep = {"l1": np.array([g[0] for g in grid]), "l2": np.array([g[1] for g in grid]),
             "val_l1": fit.val_l1, "train_l1": fit.train_l1, "train_loss": fit.train_loss,
             "selected": np.arange(len(grid)) == b}
    model = ShareModel(weight=fit.weight[b], bias=fit.bias[b], activation=activation,
                       embedding_columns=list(emb.columns), scaler=scaler, column_meta=meta,
                       params={"l1": grid[b][0], "l2": grid[b][1], "n_train": int(S.sum()),
                               "n_val": int(len(Xv)), "seed": int(seed),
                               "share_fraction": frac, "n_decoder_train": int((~S).sum()),
                               "hidden": int(hidden), "hidden_from_rule": bool(hidden_rule)},
                       sweep=sweep, method=method,
                       embedding_params=embedding_params(emb.attrs))
    if frac < 1.0:
        model.share_case_id = np.asarray(j.case_id[tr_idx[S]], dtype=object)
    D = ~S if frac < 1.0 else S           # the cases the decoders are fitted on

    def ridge_for(weight, bias):
        Ztr = ShareModel(weight=weight, bias=bias, activation=activation, embedding_columns=[],
                         scaler=scaler).transform(j.X[tr_idx[D]])
        if md["ridge"] == "gcv":
            alpha, scores = choose_ridge(Ztr, Rtr[D], intercept=md["intercept"])
            edge = int(np.argmin(scores)) in (0, len(scores) - 1)
            model.params.setdefault("ridge_at_edge", []).append(bool(edge))
            return alpha
        if weight.shape[1] + int(md["intercept"]) >= int(D.sum()):
            Zc = Ztr - Ztr.mean(axis=0) if md["intercept"] else Ztr
            return RIDGE_FALLBACK * float((Zc * Zc).sum()) / weight.shape[1]
        return 0.0

    model.ridge = ridge_for(model.weight, model.bias)
    for k in range(1, int(seeds)):      # further initialisations at the selected lambdas
        extra = train_share(j.X[tr_idx[S]], Rtr[S], grid=[grid[b]], hidden=hidden,
                            activation=activation,
                            epochs=epochs, lr=lr, batch_size=batch_size, seed=seed + k,
                            device=device, progress=progress, reduction=reduction)
        model.extra.append((seed + k, extra.weight[0], extra.bias[0],
                            ridge_for(extra.weight[0], extra.bias[0])))
    if md["align"] != "none":
        # every case's embeddings (no radiomics): the alignment is fitted on all cases both
        # checkpoints share, so it is determined on every case decoded even when d >= the
        # number of train cases (on train cases alone, Procrustes leaves the map on the
        # directions the train cases do not span arbitrary, and a pure rotation of the
        # embeddings read as lost decodability on test cases: docs/validity.md)
        model.reference_case_id = np.asarray(j.case_id, dtype=object)
        model.reference_X = np.asarray(j.X, dtype=np.float64)
    return model


fit_share_tables = fit_share   # the 0.2 name (README's Python example); kept for one release


# ---------------------------------------------------------------- decode

@dataclass
class DecodeResult:
    share_hash: str
    columns: list[str]
    column_meta: dict
    decoder: Decoder
    eval_split: str
    train_case_id: np.ndarray
    Z_train: np.ndarray
    R_train: np.ndarray          # scaled targets of the train cases
    eval_case_id: np.ndarray
    Z_eval: np.ndarray
    R_eval: np.ndarray           # scaled targets of the evaluation cases
    prediction: np.ndarray
    r2: np.ndarray
    mse: np.ndarray
    dropped_cases: list = field(default_factory=list)
    method: str = "paper"
    alignment: object = None         # lens.align.Alignment or None
    r2_direct: np.ndarray | None = None
    embedding_params: dict = field(default_factory=dict)
    r2_seeds: np.ndarray | None = None     # (K, p): R^2 through each share seed, main first
    power: object = None                   # lens.power.Power: what these counts can support
    path: str = "decoder"        # what messages call it: the embeddings it decoded

    @property
    def squared_error(self) -> np.ndarray:
        return (self.prediction - self.R_eval) ** 2

    @property
    def importance(self) -> np.ndarray:
        return self.decoder.importance

    # what compare and stats read, under the names a DEC.h5 read back has them
    # (io.formats.decoder.DecoderFile), so both compare alike

    @property
    def theta(self) -> np.ndarray:
        return self.decoder.theta

    @property
    def intercept(self) -> bool:
        return bool(self.decoder.intercept)

    @property
    def ridge(self) -> float:
        return float(self.decoder.ridge)

    @property
    def attrs(self) -> dict:
        """The decoder's settings and diagnostics, as plain values (DEC.h5's own attributes)."""
        dec, d = self.decoder, self.decoder.diagnostics
        own = {"share_hash": self.share_hash, "intercept": int(dec.intercept), "ridge": float(dec.ridge),
               "eval_split": self.eval_split, "n_train": d["n_train"], "hidden": d["hidden"],
               "effective_rank": d["effective_rank"], "condition_number": d["condition_number"],
               "diagnostics": json.dumps(d), "warnings": json.dumps(dec.warnings),
               "method": self.method,
               "alignment": f"procrustes-{self.alignment.kind}" if self.alignment is not None else "none",
               "embedding_preprocessing": json.dumps(self.embedding_params, sort_keys=True, default=str)}
        if self.alignment is not None:
            own["alignment_scale"] = float(self.alignment.scale)
            own["alignment_identity"] = int(self.alignment.identity)
            own["alignment_exact_affine"] = int(getattr(self.alignment, "exact_affine", False))
        return own

    def to_record(self) -> dict:
        """The result as plain data for DEC.h5 (io.formats.decoder writes it): `datasets`
        (theta, bias, importance, per-feature R^2/MSE, columns and their metadata, dropped
        cases, the control and per-seed R^2), per-case `groups` train/eval, and `attrs`."""
        dec = self.decoder
        datasets = {"theta": dec.theta, "bias": dec.bias, "importance": dec.importance,
                    "r2": self.r2, "mse": self.mse,
                    "columns": np.array(self.columns, dtype=object),
                    "dropped_case_id": np.array([c for c, _ in self.dropped_cases], dtype=object),
                    "dropped_case_split": np.array([s for _, s in self.dropped_cases], dtype=object)}
        for k, v in self.column_meta.items():
            datasets[f"column_{k}"] = np.asarray(v, dtype=object)
        if self.r2_direct is not None:
            datasets["r2_direct"] = self.r2_direct
        if self.r2_seeds is not None:
            datasets["r2_seeds"] = self.r2_seeds
        groups = {"train": {"case_id": self.train_case_id, "Z": self.Z_train, "target": self.R_train},
                  "eval": {"case_id": self.eval_case_id, "Z": self.Z_eval, "target": self.R_eval,
                           "prediction": self.prediction, "squared_error": self.squared_error}}
        return {"datasets": datasets, "groups": groups, "attrs": self.attrs}

    def arrays(self, names) -> dict:
        """Per-case arrays by their DEC.h5 names (train/Z, train/target, eval/Z,
        eval/target, eval/prediction, eval/squared_error)."""
        have = {"train/Z": self.Z_train, "train/target": self.R_train, "eval/Z": self.Z_eval,
                "eval/target": self.R_eval, "eval/prediction": self.prediction}
        return {n: self.squared_error if n == "eval/squared_error" else have[n] for n in names}


def decode(share: ShareModel, emb: CaseTable, rad: CaseTable, ridge: float | None = None,
           intercept: bool | None = None, eval_split: str = "test", allow_missing: bool = False,
           warn=None, align: str | None = None, allow_different_preprocessing: bool = False,
           control: bool = True, device: str = "cpu", progress=None) -> DecodeResult:
    """Z = share(align(X)); theta fitted on train; predictions and errors on `eval_split`.

    Defaults follow the share model's method: calibrated -> aligned to the pre-trained
    train embeddings, intercept, the share's ridge alpha; paper -> none of these.
    control: also fit the share-free control (ridge straight from the embeddings, alpha by
    generalised cross-validation), whose held-out R^2 is `r2_direct`.
    A symmetric share (the default) runs lens.resplit.decode_symmetric instead: this
    checkpoint's own shares over the share model's re-splits (fitted on `device`;
    progress(): one call per epoch)."""
    if share.method == "symmetric":
        from radlens_cli.lens import resplit  # resplit builds on this module (DecodeResult, join): loaded when a symmetric share is read

        given = [k for k, v in (("ridge", ridge), ("intercept", intercept), ("align", align))
                 if v is not None]
        if given:
            raise ParameterError(", ".join("{%s}" % k for k in given) + ": not for a symmetric "
                                 "share (every checkpoint gets its own ridge alpha, with an "
                                 "intercept, per re-split)", *given)
        if eval_split != "test":
            raise ParameterError("{eval_split}: a symmetric share re-splits the train and test "
                                 "cases itself", "eval_split")
        return resplit.decode_symmetric(share, emb, rad, allow_missing=allow_missing, warn=warn,
                                        allow_different_preprocessing=allow_different_preprocessing,
                                        device=device, progress=progress)
    if align is not None:
        check_choice(align, ALIGNMENTS, "align")
    if ridge is not None and ridge < 0:
        raise ParameterError("{ridge} must be >= 0", "ridge")
    if eval_split == "train":
        raise ParameterError("{eval_split} train would evaluate on the cases the decoder was fitted on",
                             "eval_split")
    warn = warn or (lambda msg: None)
    md = method_defaults(share.method)
    intercept = md["intercept"] if intercept is None else bool(intercept)
    align = md["align"] if align is None else str(align)
    ridge_given = ridge
    ridge = share.ridge if ridge is None else float(ridge)
    if align != "none" and share.reference_X is None:
        raise RadlensError("the share model holds no pre-trained reference embeddings to align "
                           "to (fitted with the paper's method); decode without alignment")
    emb_params = embedding_params(emb.attrs)
    require_same_preprocessing(share.embedding_params, emb_params,
                               "the share model's pre-trained embeddings", str(emb.path),
                               allow_different_preprocessing, warn)
    j = join(emb, rad, allow_missing,
             embedding_columns=None if align != "none" else share.embedding_columns)
    _said_missing(j, warn)
    pos = {c: k for k, c in enumerate(j.columns)}
    missing = [c for c in share.columns if c not in pos]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise RadlensError(f"{rad.path}: lacks {len(missing)} radiomic column(s) of the share "
                           f"model: {', '.join(missing[:3])}{more}")
    cols = np.array([pos[c] for c in share.columns])
    dropped = []
    sets = {}
    for name, what in (("train", "fitting the decoder"), (eval_split, "evaluation")):
        mask = require_split(j, name, what, minimum=2)
        idx = np.flatnonzero(mask)
        R = share.scaler.transform(j.radiomics(idx, cols), out=True)
        ok = np.isfinite(R).all(axis=1)
        if ok.sum() < 2 <= len(idx):  # one error naming the columns, not a warning and an error
            bad_cols = [share.columns[k] for k in np.flatnonzero(~np.isfinite(R).all(axis=0))]
            raise RadlensError(f"fewer than 2 usable `{name}` cases for {what}: non-finite radiomics in "
                               f"{rad.path}, column(s) {', '.join(map(str, bad_cols[:3]))}"
                               + (f" (+{len(bad_cols) - 3} more)" if len(bad_cols) > 3 else ""))
        if not ok.all():
            bad = j.case_id[idx[~ok]]
            dropped += [(str(c), name) for c in bad]
            warn(f"{len(bad)} {name} case(s) with non-finite radiomics in the share model's "
                 f"columns left out: {', '.join(map(str, bad[:5]))}"
                 + (" ..." if len(bad) > 5 else ""))
            idx, R = idx[ok], R[ok]
        if len(idx) < 2:
            raise RadlensError(f"fewer than 2 usable `{name}` cases for {what}")
        sets[name] = (idx, R)
    (itr, Rtr), (iev, Rev) = sets["train"], sets[eval_split]
    Xtr, Xev = j.X[itr], j.X[iev]
    alignment = None
    if align != "none":
        keep = distinct_columns(j.X)
        if len(keep) < j.X.shape[1]:
            warn(f"{emb.path}: {j.X.shape[1] - len(keep)} embedding dim(s) repeat an earlier dim "
                 f"exactly; left out before alignment")
            Xtr, Xev = Xtr[:, keep], Xev[:, keep]
        pos_ref = {c: k for k, c in enumerate(map(str, share.reference_case_id))}
        ids = [str(c) for c in j.case_id]
        both = np.array([k for k, c in enumerate(ids) if c in pos_ref], dtype=np.int64)
        if len(both) < 2:
            raise RadlensError(f"{emb.path}: fewer than 2 cases in common with the share "
                               f"model's pre-trained embeddings; cannot align")
        if len(both) < len(ids) or len(both) < len(pos_ref):
            warn(f"aligning on the {len(both)} case(s) common to {emb.path} and the share "
                 f"model ({len(ids)} and {len(pos_ref)} cases)")
        Xall = j.X[:, keep] if len(keep) < j.X.shape[1] else j.X
        ref = share.reference_X[[pos_ref[ids[k]] for k in both]]
        # embeddings only (no radiomics) of every shared case, train, val and test: with
        # train cases alone the map is arbitrary outside their span when d >= n_train
        alignment = fit_alignment(Xall[both], ref, align)
        # folded into share's first (linear) layer below: X W' + b' == align(X) W + b
    elif Xtr.shape[1] != share.embedding_dim:
        raise RadlensError(f"{emb.path}: {Xtr.shape[1]} embedding dims, the share model takes "
                           f"{share.embedding_dim}")
    if share.share_case_id is not None:   # decoders never fit on the cases share was fitted on
        seen = set(map(str, share.share_case_id))
        dmask = np.array([str(c) not in seen for c in j.case_id[itr]])
        if dmask.sum() < 2:
            raise RadlensError(f"{emb.path}: fewer than 2 train cases outside the share model's own "
                               f"fitting cases to fit the decoder on")
        itr, Xtr, Rtr = itr[dmask], Xtr[dmask], Rtr[dmask]
    def through(weight, bias):
        """share(align(X)) as one linear layer and the non-linearity."""
        if alignment is None:
            return ShareModel(weight=weight, bias=bias, activation=share.activation,
                              embedding_columns=[], scaler=share.scaler)
        W2, b2 = alignment.compose(weight, bias)
        return ShareModel(weight=W2, bias=b2, activation=share.activation, embedding_columns=[],
                          scaler=share.scaler)

    main = through(share.weight, share.bias)
    Ztr = main.transform(Xtr)
    Zev = main.transform(Xev)
    dec = fit_decoder(Ztr, Rtr, ridge=ridge, intercept=intercept)
    for w in dec.warnings:
        warn(w)
    dg = dec.diagnostics
    edge = share.params.get("ridge_at_edge") if ridge_given is None else None
    constant = int((np.ptp(Ztr, axis=0) == 0).sum()) if len(Ztr) else 0   # dead units: harmless
    dg["constant_units"] = constant
    power = assess(len(itr), Ztr.shape[1], n_eval=len(iev), rank=dg["effective_rank"], dof=dg["dof"],
                   alpha=dec.ridge, alpha_at_edge=bool(edge[0]) if isinstance(edge, list) and edge else False,
                   constant=constant)
    if power.underpowered:
        warn(f"{power.headline()} (the rule: docs/validity.md, small cohorts)")
    pred = dec.predict(Zev)
    r2 = r2_score(pred, Rev)
    mse = ((pred - Rev) ** 2).mean(axis=0)
    r2_seeds = None
    if share.extra:
        r2_seeds = [r2]
        for _, w, b, a in share.extra:
            act = through(w, b)
            dk = fit_decoder(act.transform(Xtr), Rtr, ridge=a if ridge_given is None else ridge_given,
                             intercept=intercept)
            r2_seeds.append(r2_score(dk.predict(act.transform(Xev)), Rev))
        r2_seeds = np.stack(r2_seeds)
    r2_direct = None
    if control:   # share-free control: ridge from the raw embeddings, intercept, GCV alpha
        # on the same train cases as the share decoder, so the two differ only by the share
        _, _, direct = ridge_gcv(j.X[itr], Rtr, intercept=True)
        Xr_ev = j.X[iev]
        r2_direct = r2_score(direct.predict(Xr_ev), Rev)
    meta = {k: np.asarray(v, dtype=object) for k, v in share.column_meta.items()}
    if not meta:
        meta = table_column_meta(share.columns)
    return DecodeResult(share_hash=share.share_hash, columns=list(share.columns),
                        column_meta=meta, decoder=dec, eval_split=eval_split,
                        train_case_id=j.case_id[itr], Z_train=Ztr, R_train=Rtr,
                        eval_case_id=j.case_id[iev], Z_eval=Zev, R_eval=Rev, prediction=pred,
                        r2=r2, mse=mse, dropped_cases=dropped, method=share.method,
                        alignment=alignment, r2_direct=r2_direct,
                        embedding_params=emb_params, r2_seeds=r2_seeds, path=str(emb.path),
                        power=power)


def distinct_columns(X: np.ndarray) -> np.ndarray:
    """Indices of the columns of X that do not repeat an earlier column exactly."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)
    seen, keep = {}, []
    for j in range(X.shape[0]):
        key = X[j].tobytes()
        if key not in seen:
            seen[key] = j
            keep.append(j)
    return np.asarray(keep, dtype=np.int64)


def fit_share_params(model: ShareModel, output: str = "", *, epochs: int | None = None, lr: float | None = None,
                     sweep: bool = False, method: str = "symmetric", loss_reduction: str = "mean",
                     seeds: int = 1, activation: str = "relu", batch_size: int = 256, seed: int = 0,
                     device: str = "auto", allow_missing: bool = False, warn=None, info=None) -> dict:
    """After fit_share (called with these arguments): what SHARE.h5 records as its parameters
    (also set in model.params), said as `radlens fit-share` says it -- the dropped radiomic
    columns, the hidden size's rule or the cohort's power, the sweep's choice. output: the
    SHARE.h5 the messages point to."""
    warn, info = warn or (lambda m: None), info or (lambda m: None)
    for col, why in model.scaler.dropped:
        warn(f"dropped radiomic column {col}: {why}")
    if model.scaler.dropped:
        warn(f"{len(model.scaler.dropped)} radiomic column(s) dropped (listed in {output}: dropped_columns)")
    symmetric = METHOD_ALIASES.get(method, method) == "symmetric"
    if symmetric:
        epochs, lr = model.params["resplit_epochs"], model.params["resplit_lr"]
    else:
        epochs, lr = epochs or 200, 1e-3 if lr is None else lr
    n_dec = model.params["n_decoder_train"]
    if model.params.get("hidden_from_rule"):
        info(ParameterMessage(f"share: h = {model.hidden} for {n_dec} decoder train cases (default: two decoder "
                              f"cases per coefficient, at most {DEFAULT_HIDDEN}; {{hidden}} to set)", "hidden"))
    else:
        verdict = assess(n_dec, model.hidden)
        if verdict.underpowered:
            warn(f"{verdict.headline()}; see docs/validity.md, small cohorts")
    params = {"hidden": model.hidden, "hidden_from_rule": bool(model.params.get("hidden_from_rule")),
              "hidden_rule": RULE, "ridge_at_edge": model.params.get("ridge_at_edge"),
              "l1": model.params["l1"], "l2": model.params["l2"],
              "epochs": epochs, "lr": lr, "sweep": sweep, "scale": model.scaler.kind,
              "method": method, "loss_reduction": loss_reduction, "ridge": model.ridge,
              "seeds": seeds, "share_fraction": model.params["share_fraction"],
              "n_decoder_train": model.params["n_decoder_train"],
              "activation": activation, "batch_size": batch_size, "seed": seed,
              "device": device, "allow_missing": allow_missing,
              "n_train": model.params["n_train"], "n_val": model.params["n_val"]}
    if symmetric:
        params.update({k: model.params[k] for k in ("n_resplits", "test_fraction", "n_share",
                                                     "n_test", "pool_splits")})
    model.params.update(params)
    if sweep:
        s = model.sweep
        best = int(np.flatnonzero(s["selected"])[0])
        info(f"sweep: selected l1={s['l1'][best]:g} l2={s['l2'][best]:g} (val L1 {s['val_l1'][best]:.4g})")
        msg = sweep_spread_message(s["val_l1"], info)
        if msg is not None:
            warn(msg)
    return params


def sweep_table(model: ShareModel):
    """The lambda sweep's grid with its scores (fit-share --sweep-scores' rows)."""
    import pandas as pd  # heavy: kept out of `radlens --help`

    s = model.sweep
    return pd.DataFrame({k: s[k] for k in ("l1", "l2", "val_l1", "train_l1", "train_loss", "selected")})


def share_summary(model: ShareModel, method: str = "symmetric", activation: str = "relu") -> str:
    """fit-share's closing line: the share's shape, the columns kept, the method's protocol."""
    head = (f"share: d={model.embedding_dim} -> h={model.hidden} ({activation}), "
            f"{len(model.columns)} radiomic columns kept, {len(model.scaler.dropped)} dropped; ")
    if METHOD_ALIASES.get(method, method) == "symmetric":
        pp = model.params
        return head + (f"method symmetric: {pp['n_resplits']} re-splits of {pp['n_share']} share / "
                       f"{pp['n_decoder_train']} decoder / {pp['n_test']} test cases, the reference's "
                       f"shares fitted; share_hash {model.share_hash[:12]}")
    return head + f"method {method}, decoder ridge {model.ridge:.4g}; share_hash {model.share_hash[:12]}"


SWEEP_SPREAD_WARN = 0.05


def sweep_spread_message(val_l1, info=None) -> str | None:
    """The sweep's spread between its best and worst grid points, relative to the best
    validation L1 (logged); a warning to give when it is under SWEEP_SPREAD_WARN (the
    choice is then noise), else None."""
    v = np.asarray(val_l1, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or v.min() <= 0:
        return None
    spread = (v.max() - v.min()) / v.min()
    text = (f"sweep: best and worst grid points are {100 * spread:.1f} % of the best validation "
            f"L1 apart")
    if spread < SWEEP_SPREAD_WARN:
        return (text + f" (under {100 * SWEEP_SPREAD_WARN:g} %): the selection is within noise; "
                f"the default l1, l2 serve as well")
    if info:
        info(text)
    return None


def decode_summary(res: DecodeResult, eval_split: str = "test") -> str:
    """decode's closing line: columns, cases, mean R^2 and the decoder's conditioning (or, for
    the symmetric lens, the re-splits and the mean clipped R^2)."""
    if res.method == "symmetric":
        from radlens_cli.lens.interval import clipped  # interval builds on this module (via resplit): loaded for a symmetric result

        rs = res.resplit
        return (f"decoders: {len(res.columns)} columns over {rs['r2'].shape[0]} re-splits "
                f"({res.sizes[0]} share / {res.sizes[1]} decoder / {res.sizes[2]} test cases); "
                f"mean R2 clipped at 0 {float(clipped(rs['r2']).mean()):.3f}; method symmetric"
                + ("" if res.same_information == "no" else
                   f" (the reference's own shares: {res.same_information})"))
    d = res.decoder.diagnostics
    nconst = int(d.get("constant_units", 0))
    if np.isfinite(d["condition_number"]):
        cond = f"cond {d['condition_number']:.3g}"
    elif nconst and d["effective_rank"] >= min(d["hidden"] - nconst, d["n_train"] - 1):
        cond = f"{nconst} hidden unit(s) constant on these cases (weight 0), the rest full rank"
    else:   # said in the underpowered warning above
        cond = f"rank-deficient (see the warning), ridge {res.decoder.ridge:.3g}"
    return (f"decoder: {len(res.columns)} columns from h={d['hidden']} "
            f"(n_train={d['n_train']}, rank {d['effective_rank']}, {cond}); "
            f"{eval_split}: {len(res.eval_case_id)} cases, mean R2 {float(np.mean(res.r2)):.3f}, "
            f"MSE {float(np.mean(res.mse)):.4g}; method {res.method}"
            + (f", aligned ({res.alignment.residual_note})" if res.alignment is not None else ""))
