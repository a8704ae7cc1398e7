"""How much the lens can say on a cohort of this size: the small-sample rule (issue 25).

Pure functions of counts and of the decoder's fitted quantities; no file, no CLI.

The rule, in the lens's terms (n_D = decoder train cases: the train cases share was not
fitted on; h = hidden units of share; df = the ridge decoder's effective degrees of
freedom, sum_k w_k / (w_k + alpha) over the eigenvalues w of the centred Z_train^T Z_train,
+1 for the intercept):

1. Default h = min(256, max(MIN_HIDDEN, n_D // CASES_PER_UNIT - 1)): at least two decoder
   cases per coefficient (h weights and the intercept). With h >= n_D the decoder's design Z_train (n_D x h, centred)
   has rank < h: its condition number is infinite (decode printed `cond inf`), the
   least-squares fit interpolates the train cases, and the ridge alpha chosen by
   generalised cross-validation degenerates (GCV's (1 - df/n)^2 goes to 0; on the 60-case
   tour alpha swung between 3e-6 and 31 with the share seed). Two cases per coefficient
   leaves as many residual degrees of freedom as coefficients. Measured on the phantom
   cohort (docs/validity.md, "Small cohorts"): at 80 cases (28 decoder, 16 test cases)
   the sign of the median held-out R^2 over all columns depended on the share seed for
   most h; at 160 cases it was positive for every seed and h tried. Cohort size decides,
   hence rule 2 and the example's 160 cases.
2. Underpowered (one warning line each, and the report's headline says so) when
   - n_D < CASES_PER_UNIT * (h + 1): fewer than two decoder cases per coefficient;
   - the decoder's design is rank-deficient beyond its constant columns (hidden units
     constant on the decoder cases, e.g. dead ReLUs, are harmless: their weights are 0):
     part of theta is then fixed by the ridge alone;
   - df > n_D / 2: the decoder spends more than half of its cases' degrees of freedom,
     so its held-out R^2 is mostly noise;
   - alpha sits at an end of the GCV grid (the criterion has no interior minimum);
   - fewer than MIN_EVAL evaluation cases: every feature's R^2 rests on so few cases
     that its sign is a coin flip for weakly decodable features.
The thresholds are conventions (two cases per coefficient, half the degrees of freedom,
20 evaluation cases), chosen on the measurements above; they are recorded with the
outputs, so a reader sees which rule flagged a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_HIDDEN = 256     # the paper's h, kept when the cohort supports it
MIN_HIDDEN = 8           # below this the share loses most radiomic information (measured)
CASES_PER_UNIT = 2       # decoder train cases per coefficient
MAX_DOF_FRACTION = 0.5   # df / n_D above this: the decoder fits mostly noise
MIN_EVAL = 20            # evaluation cases below this: per-feature R^2 is a coin flip
RULE = (f"default h = min({DEFAULT_HIDDEN}, max({MIN_HIDDEN}, n_decoder//{CASES_PER_UNIT} - 1)); "
        f"underpowered when n_decoder < {CASES_PER_UNIT}*(h+1), rank(Z_train) < its non-constant "
        f"columns, df > {MAX_DOF_FRACTION:g}*n_decoder, alpha at an end of the GCV grid, "
        f"or n_eval < {MIN_EVAL}")


def recommended_hidden(n_decoder: int, default: int = DEFAULT_HIDDEN) -> int:
    """h for a share whose decoders are fitted on n_decoder cases (rule 1)."""
    return int(min(default, max(MIN_HIDDEN, int(n_decoder) // CASES_PER_UNIT - 1)))


def decoder_cases(n_train: int, share_fraction: float) -> int:
    """The train cases left to the decoders when share takes `share_fraction` of them
    (the same rounding as fit-share's split)."""
    if share_fraction >= 1.0:
        return int(n_train)
    return int(n_train) - int(round(share_fraction * int(n_train)))


def ridge_dof(eigvals, alpha: float, intercept: bool = True) -> float:
    """Effective degrees of freedom of a ridge fit: sum_k w_k / (w_k + alpha) (+1 intercept);
    with alpha = 0 the rank (eigenvalues above the numerical tolerance)."""
    w = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    if alpha > 0:
        df = float((w / (w + alpha)).sum())
    else:
        tol = (float(w.max()) if w.size else 0.0) * np.finfo(np.float64).eps * max(len(w), 1)
        df = float((w > tol).sum())
    return df + (1.0 if intercept else 0.0)


@dataclass
class Power:
    """What the lens can say on this cohort: the counts, the flags and their one-line reasons."""

    n_decoder: int
    hidden: int
    n_eval: int | None = None
    rank: int | None = None
    constant: int = 0
    dof: float | None = None
    alpha: float | None = None
    alpha_at_edge: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def underpowered(self) -> bool:
        return bool(self.reasons)

    def headline(self) -> str:
        """`underpowered: 28 decoder cases for h = 32; ...` ('' when nothing is flagged)."""
        return ("underpowered: " + "; ".join(self.reasons)) if self.reasons else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["underpowered"] = self.underpowered
        d["rule"] = RULE
        return d


def assess(n_decoder: int, hidden: int, n_eval: int | None = None, rank: int | None = None,
           dof: float | None = None, alpha: float | None = None,
           alpha_at_edge: bool = False, constant: int = 0) -> Power:
    """Rule 2: the reasons (short, naming the numbers) a lens run on these counts is underpowered.
    constant: hidden units constant on the decoder cases (they cost no rank that matters)."""
    p = Power(n_decoder=int(n_decoder), hidden=int(hidden), n_eval=n_eval, rank=rank, dof=dof,
              alpha=alpha, alpha_at_edge=bool(alpha_at_edge), constant=int(constant))
    if n_decoder < CASES_PER_UNIT * (hidden + 1):
        p.reasons.append(f"{n_decoder} decoder cases for h = {hidden} (the rule wants >= "
                         f"{CASES_PER_UNIT * (hidden + 1)}: h <= {recommended_hidden(n_decoder)}, "
                         f"or more cases)")
    usable = min(hidden - int(constant), max(n_decoder - 1, 0))
    if rank is not None and rank < usable:
        p.reasons.append(f"Z_train has rank {rank} of {hidden - int(constant)} non-constant hidden "
                         f"units (collinear: {usable - rank} direction(s) fixed by the ridge alone)")
    if dof is not None and n_decoder > 0 and dof > MAX_DOF_FRACTION * n_decoder:
        p.reasons.append(f"the decoder uses {dof:.1f} effective degrees of freedom on {n_decoder} "
                         f"cases (> {MAX_DOF_FRACTION:g}x)")
    if alpha_at_edge and alpha is not None:
        p.reasons.append(f"ridge alpha {alpha:.3g} is at an end of the GCV grid (no interior "
                         f"minimum: alpha is not determined by these cases)")
    if n_eval is not None and n_eval < MIN_EVAL:
        p.reasons.append(f"{n_eval} evaluation cases (< {MIN_EVAL}: each feature's R2 rests on "
                         f"too few cases)")
    return p
