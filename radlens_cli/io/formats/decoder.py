"""DEC.h5, schema decoder/1, written by `radlens decode`: one decoder's theta, bias, per-feature
R^2 and MSE, its settings, and the per-case train/eval arrays compare and stats read back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import DECODER_SCHEMA, decode_strings, open_h5, read_h5_attrs, write_h5

if TYPE_CHECKING:
    from radlens_cli.lens.steps import DecodeResult


def save_decoder(res: "DecodeResult", path: str, attrs: dict | None = None, force: bool = False) -> None:
    """Write DEC.h5 (schema decoder/1).

    Bulk per-case arrays (Z, targets, predictions, squared errors) are float32: targets are
    min-max scaled to ~[0, 1], where float32 keeps ~7 digits, far below the noise of any
    R^2 or importance; it halves the file (19,000 x 2,511 -> ~0.3 GB) and the read time.
    theta, bias and the per-feature metrics are float64.
    """
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    dec = res.decoder
    datasets = {"theta": dec.theta, "bias": dec.bias, "importance": dec.importance,
                "r2": res.r2, "mse": res.mse,
                "columns": np.array(res.columns, dtype=object),
                "dropped_case_id": np.array([c for c, _ in res.dropped_cases], dtype=object),
                "dropped_case_split": np.array([s for _, s in res.dropped_cases], dtype=object)}
    for k, v in res.column_meta.items():
        datasets[f"column_{k}"] = np.asarray(v, dtype=object)
    groups = {
        "train": {"case_id": res.train_case_id, "Z": f32(res.Z_train), "target": f32(res.R_train)},
        "eval": {"case_id": res.eval_case_id, "Z": f32(res.Z_eval), "target": f32(res.R_eval),
                 "prediction": f32(res.prediction), "squared_error": f32(res.squared_error)},
    }
    d = dec.diagnostics
    own = {"share_hash": res.share_hash, "intercept": int(dec.intercept), "ridge": float(dec.ridge),
           "eval_split": res.eval_split, "n_train": d["n_train"], "hidden": d["hidden"],
           "effective_rank": d["effective_rank"], "condition_number": d["condition_number"],
           "diagnostics": json.dumps(d), "warnings": json.dumps(dec.warnings),
           "method": res.method,
           "alignment": f"procrustes-{res.alignment.kind}" if res.alignment is not None else "none",
           "embedding_preprocessing": json.dumps(res.embedding_params, sort_keys=True, default=str)}
    if res.alignment is not None:
        own["alignment_scale"] = float(res.alignment.scale)
        own["alignment_identity"] = int(res.alignment.identity)
        own["alignment_exact_affine"] = int(getattr(res.alignment, "exact_affine", False))
    if res.r2_direct is not None:
        datasets["r2_direct"] = res.r2_direct
    if res.r2_seeds is not None:
        datasets["r2_seeds"] = res.r2_seeds
    rs = getattr(res, "resplit", None)
    if rs:   # the symmetric lens: every re-split's R^2, MSE, importance, alpha, per-case errors
        groups["resplit"] = {"r2": rs["r2"], "mse": rs["mse"], "importance": rs["importance"],
                             "ridge": rs["ridge"], "squared_error": f32(rs["squared_error"]),
                             "test_case_id": np.asarray(rs["test_case_id"], dtype=object)}
        n_s, n_d, n_t = res.sizes
        own.update({"n_resplits": int(rs["r2"].shape[0]), "n_share": n_s, "n_decoder_train": n_d,
                    "n_test": n_t, "protocol_hash": res.protocol_hash,
                    "embedding_scale": float(res.embedding_scale),
                    "same_information": res.same_information})
    write_h5(path, DECODER_SCHEMA, datasets, {**(attrs or {}), **own}, force, groups=groups)


@dataclass
class DecoderFile:
    """A DEC.h5 read back; bulk arrays are loaded only when asked for (`bulk=True`)."""

    path: str
    attrs: dict
    share_hash: str
    columns: list[str]
    column_meta: dict
    theta: np.ndarray
    bias: np.ndarray
    r2: np.ndarray
    mse: np.ndarray
    intercept: bool
    ridge: float
    eval_case_id: np.ndarray
    train_case_id: np.ndarray
    bulk: dict = field(default_factory=dict)
    r2_direct: np.ndarray | None = None
    r2_seeds: np.ndarray | None = None
    resplit: dict | None = None   # the symmetric lens: r2, mse, importance (R, p), ridge (R,)

    @property
    def importance(self) -> np.ndarray:
        from radlens_cli.lens.decoder import importance

        return importance(self.theta)


def load_decoder(path: str, bulk: tuple[str, ...] = ()) -> DecoderFile:
    """Read DEC.h5. bulk: names among train/Z, train/target, eval/Z, eval/target,
    eval/prediction, eval/squared_error (and resplit/squared_error) to load as float64 arrays."""
    shown = "stdin" if path == "-" else path
    with open_h5(path, DECODER_SCHEMA, "decoder") as f:
        try:
            attrs = read_h5_attrs(f)
            out = DecoderFile(
                path=shown, attrs=attrs, share_hash=str(attrs["share_hash"]),
                columns=list(decode_strings(f["columns"][()])),
                column_meta={k[len("column_"):]: decode_strings(f[k][()]) for k in f
                             if k.startswith("column_")},
                theta=f["theta"][()], bias=f["bias"][()], r2=f["r2"][()], mse=f["mse"][()],
                intercept=bool(attrs["intercept"]), ridge=float(attrs["ridge"]),
                eval_case_id=decode_strings(f["eval/case_id"][()]),
                train_case_id=decode_strings(f["train/case_id"][()]))
            if "r2_direct" in f:
                out.r2_direct = f["r2_direct"][()]
            if "r2_seeds" in f:
                out.r2_seeds = f["r2_seeds"][()]
            if "resplit" in f:
                out.resplit = {k: f["resplit"][k][()] for k in ("r2", "mse", "importance", "ridge")}
            for name in bulk:
                out.bulk[name] = np.asarray(f[name][()], dtype=np.float64)
        except KeyError as e:
            raise RadlensError(f"{shown}: decoder file lacks {e} (not written by decode?)") from None
    return out
