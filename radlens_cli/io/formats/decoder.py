"""DEC.h5, schema decoder/1, written by `radlens decode`: one decoder's theta, bias, per-feature
R^2 and MSE, its settings, and the per-case train/eval arrays compare and stats read back.

The lens's DecodeResult serialises itself to plain data (`to_record`); this module writes
it, and reads a file back as a DecoderFile, which the lens compares as it does a
DecodeResult. It never imports the lens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import DECODER_SCHEMA, decode_strings, open_h5, read_h5_attrs, write_h5


def save_decoder(res, path: str, attrs: dict | None = None, force: bool = False) -> None:
    """Write DEC.h5 (schema decoder/1) of a lens.DecodeResult (or its `to_record()`: plain
    `datasets`, per-case `groups` train/eval, its own `attrs`).

    Bulk per-case arrays (Z, targets, predictions, squared errors) are float32: targets are
    min-max scaled to ~[0, 1], where float32 keeps ~7 digits, far below the noise of any
    R^2 or importance; it halves the file (19,000 x 2,511 -> ~0.3 GB) and the read time.
    theta, bias and the per-feature metrics are float64.
    """
    rec = res.to_record() if hasattr(res, "to_record") else res
    groups = {g: {k: v if k == "case_id" else np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
              for g, arrays in rec["groups"].items()}
    write_h5(path, DECODER_SCHEMA, rec["datasets"], {**(attrs or {}), **rec["attrs"]}, force, groups=groups)


@dataclass
class DecoderFile:
    """A DEC.h5 read back; the per-case arrays are read only when asked for (`bulk`, or
    `arrays(names)` later), so a compare of large decoders holds only what it uses."""

    path: str                # as shown in messages: the path, or "stdin"
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
    source: str = ""         # what to reopen for `arrays` (`-`: the spooled stdin)

    def arrays(self, names) -> dict:
        """The per-case arrays `names` (see `load_decoder`) as float64, read from the file
        unless already loaded."""
        names = tuple(names)
        todo = tuple(n for n in names if n not in self.bulk)
        got = load_decoder(self.source, bulk=todo).bulk if todo else {}
        return {n: self.bulk[n] if n in self.bulk else got[n] for n in names}


def load_decoder(path: str, bulk: tuple[str, ...] = ()) -> DecoderFile:
    """Read DEC.h5. bulk: names among train/Z, train/target, eval/Z, eval/target,
    eval/prediction, eval/squared_error to load as float64 arrays."""
    shown = "stdin" if path == "-" else path
    with open_h5(path, DECODER_SCHEMA, "decoder") as f:
        try:
            attrs = read_h5_attrs(f)
            out = DecoderFile(
                path=shown, source=path, attrs=attrs, share_hash=str(attrs["share_hash"]),
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
