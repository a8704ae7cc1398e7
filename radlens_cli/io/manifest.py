"""Cohort manifests: one row per case, image/mask path columns, optional split and targets."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MaskSpec:
    """A mask column and what makes the ROI: label / segment numbers and segment names
    (both None: every non-zero voxel of a label map, or a SEG/RTSTRUCT's only segment)."""

    column: str
    labels: tuple[int, ...] | None = None
    names: tuple[str, ...] | None = None

    def __str__(self) -> str:
        items = [str(v) for v in self.labels or ()] + list(self.names or ())
        return f"{self.column}:{'+'.join(items)}" if items else self.column


def parse_mask_spec(spec: str, param: str = "mask") -> MaskSpec:
    """`gland` (non-zero), `zones:1` (one label), `zones:1+2` (a union of labels),
    `seg:prostate`, `rt:Prostate+Lesion` (DICOM segments by name, case-insensitive),
    `seg:#2` (SEG segment number 2; the same as `seg:2`). param: the parameter the spec
    came from, named in errors."""
    spec = spec.strip()
    if not spec:
        raise ParameterError(f"empty {{{param}}}", param)
    if ":" not in spec:
        return MaskSpec(spec)
    column, _, selector = spec.partition(":")
    column = column.strip()
    numbers, names = [], []
    for item in selector.split("+"):
        item = item.strip()
        text = item[1:].strip() if item.startswith("#") else item
        if text.lstrip("-").isdigit():
            value = int(text)
            if value <= 0:
                raise ParameterError(f"{{{param}}} {spec}: labels and segment numbers must be > 0 (got {item})",
                                     param)
            numbers.append(value)
        elif item.startswith("#") or not item:
            raise ParameterError(f"{{{param}}} {spec}: expected COLUMN, COLUMN:LABEL[+LABEL...], "
                                 f"COLUMN:NAME[+NAME...] or COLUMN:#N (got {item!r})", param)
        else:
            names.append(item)
    if not column:
        raise ParameterError(f"{{{param}}} {spec}: no column before ':'", param)
    return MaskSpec(column, tuple(dict.fromkeys(numbers)) or None, tuple(dict.fromkeys(names)) or None)


def derive_split(case_ids, seed: int = 0) -> np.ndarray:
    """Deterministic patient-level 7:1:2 split from a seeded hash of each case_id.

    Each case's split depends only on its own id and the seed, so adding cases to a
    cohort never moves existing ones.
    """
    out = []
    for cid in case_ids:
        digest = hashlib.sha256(f"radlens-split:{seed}:{cid}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        out.append("train" if u < 0.7 else ("val" if u < 0.8 else "test"))
    return np.array(out, dtype=object)


@dataclass
class Manifest:
    path: str
    base_dir: str
    frame: "object"  # pandas.DataFrame, indexed by position
    split_derived: bool = False
    split_seed: int = 0

    @property
    def case_ids(self) -> np.ndarray:
        return self.frame["case_id"].to_numpy(dtype=object)

    @property
    def split(self) -> np.ndarray:
        return self.frame["split"].to_numpy(dtype=object)

    def __len__(self) -> int:
        return len(self.frame)

    def resolve(self, value) -> str | None:
        """A path cell resolved against the manifest's folder (None for an empty cell)."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        value = str(value).strip()
        if not value:
            return None
        value = os.path.expanduser(value)
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(self.base_dir, value))

    def paths(self, column: str) -> list[str | None]:
        return [self.resolve(v) for v in self.frame[column]]

    def require_columns(self, columns, role: str) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise UsageError(f"{self.path}: unknown {role} column(s) {', '.join(missing)}; "
                             f"manifest columns are {', '.join(map(str, self.frame.columns))}")

    def require_images(self, modalities, mask) -> None:
        """The image columns of every command that reads the cohort's images: each
        modality and the mask spec's column (a MaskSpec)."""
        self.require_columns(modalities, "modality")
        self.require_columns([mask.column], "mask")

    def target_values(self, column: str, task: str) -> dict:
        """case_id -> target for the cases whose `column` cell is filled in: floats for
        task "regress", else class labels (numeric labels as numbers: 1 and 1.0 are one class)."""
        import pandas as pd  # heavy: kept out of the module's import

        self.require_columns([column], "target")
        raw = self.frame[column].astype(str).str.strip()
        ids = self.case_ids
        has = (raw != "").to_numpy() & ~raw.str.lower().isin(["nan", "na"]).to_numpy()
        vals = raw.to_numpy(dtype=object)
        num = pd.to_numeric(raw.where(has), errors="coerce").to_numpy(dtype=np.float64)
        if task == "regress":
            bad = has & ~np.isfinite(num)
            if bad.any():
                i = int(np.argmax(bad))
                raise ParameterError(f"{self.path}: target {column} is not numeric for case {ids[i]} "
                                     f"({vals[i]!r}); use {{task}} for labels", "task",
                                     plain={"task": "task='classify'"}, flags={"task": "--task classify"},
                                     exit_code=EXIT_DATA)
            return {c: float(v) for c, v, h in zip(ids, num, has) if h}
        if np.isfinite(num[has]).all():
            lab = [int(v) if float(v).is_integer() else float(v) for v in num[has]]
            return dict(zip(ids[has], lab))
        return dict(zip(ids[has], vals[has]))

    def target(self, column: str) -> np.ndarray:
        """A numeric target column; error naming the cases where it is missing."""
        import pandas as pd

        self.require_columns([column], "target")
        vals = pd.to_numeric(self.frame[column], errors="coerce")
        bad = vals.isna()
        if bad.any():
            ids = self.frame.loc[bad, "case_id"].tolist()
            more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
            raise RadlensError(f"{self.path}: target column {column} is missing or not numeric for "
                               f"case(s) {', '.join(map(str, ids[:5]))}{more}")
        return vals.to_numpy(dtype=np.float64)

    def select(self, indices) -> "Manifest":
        return Manifest(self.path, self.base_dir, self.frame.iloc[list(indices)].reset_index(drop=True),
                        self.split_derived, self.split_seed)

    def shard(self, part_id: int, num_parts: int) -> "Manifest":
        """Cases part_id, part_id+num_parts, ... (nnU-Net style), after sorting by case_id."""
        order = np.argsort(self.case_ids.astype(str), kind="stable")
        return self.select(order[part_id::num_parts])


def read_manifest(path: str, split_seed: int = 0) -> Manifest:
    """Read a cohort manifest CSV; checks case_id presence/uniqueness and split values."""
    import pandas as pd

    if path == "-":
        raise UsageError("the manifest must be a file (relative paths resolve against its folder)")
    if not os.path.exists(path):
        raise RadlensError(f"manifest not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:
        raise RadlensError(f"{path}: cannot parse manifest CSV: {e}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if "case_id" not in frame.columns:
        raise RadlensError(f"{path}: no `case_id` column (columns: {', '.join(frame.columns)})")
    frame["case_id"] = frame["case_id"].str.strip()
    empty = frame.index[frame["case_id"] == ""].tolist()
    if empty:
        raise RadlensError(f"{path}: empty case_id on data row(s) {', '.join(str(i + 1) for i in empty[:5])}")
    dup = frame["case_id"][frame["case_id"].duplicated()].unique().tolist()
    if dup:
        raise RadlensError(f"{path}: duplicate case_id {', '.join(dup[:5])}")
    derived = "split" not in frame.columns
    if derived:
        frame["split"] = derive_split(frame["case_id"], split_seed)
    else:
        frame["split"] = frame["split"].str.strip().str.lower()
        bad = frame.loc[~frame["split"].isin(SPLITS), ["case_id", "split"]]
        if len(bad):
            cid, val = bad.iloc[0]
            raise RadlensError(f"{path}: case {cid} has split {val!r}; expected train, val or test")
    return Manifest(path=path, base_dir=os.path.dirname(os.path.abspath(path)), frame=frame,
                    split_derived=derived, split_seed=split_seed)
