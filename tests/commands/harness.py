"""The STYLE conventions every command is tested against, written once.

A command's test module describes the command with a `Spec` (how to make its inputs, the
arguments for an output path, how to read what it wrote) and calls the checks below:

- `default_run`: exit 0, stdout empty when the output is a file (stdout carries data
  only), the output exists, no temporary `.part` file is left beside it;
- `pipe_out` / `pipe_in`: `-o -` writes the same data to stdout, and `-` for an input
  reads it from stdin with the same result;
- `spaces`: inputs and output in a folder whose path has spaces;
- `determinism`: the same seed gives the same values *and* the same recorded parameters
  (the provenance `params`), another seed records that seed;
- `bad_input`: the exit code, one line `radlens <cmd>: error: ...` naming the culprit, no
  traceback, and no output (nor a `.part` temporary) left behind.

Data are compared through `Output`: the values a command computed (`data`) and the
parameters it recorded (`params`), read back by `read_h5`, `read_csv`, `read_folder`,
`read_checkpoint` or `read_stdout`. Run times, command lines and paths are provenance,
not data, and are left out of the comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# ------------------------------------------------------------------------------ outputs


@dataclass
class Output:
    data: dict             # name -> np.ndarray | str | number: what the command computed
    params: dict | None    # the parameters it recorded (None: the format records none)
    attrs: dict = field(default_factory=dict)  # the raw provenance, for command-specific checks


def _decode(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return np.array([x.decode() if isinstance(x, bytes) else x for x in v.ravel()], dtype=object).reshape(v.shape)
    return v


def read_h5(path) -> Output:
    """Every dataset of a radlens HDF5 file, and its root attributes (params parsed)."""
    import h5py

    data = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: data.__setitem__(name, _decode(obj[()])) if isinstance(obj, h5py.Dataset)
                     else None)
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
    params = json.loads(attrs["params"]) if "params" in attrs else None
    return Output(data, params, attrs)


def read_csv(path, params_columns=(), provenance_columns=("command", "a", "b")) -> Output:
    """A CSV's columns as data; `params_columns` are what it records of its parameters.
    `provenance_columns` (command line, input paths) are neither."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False)
    data = {c: df[c].to_numpy() for c in df.columns if c not in provenance_columns}
    params = None
    if params_columns:  # one value per column when every row agrees (a one-row result)
        params = {c: (df[c].tolist()[0] if df[c].nunique() <= 1 else df[c].tolist()) for c in params_columns}
    attrs = {c: df[c].tolist() for c in provenance_columns if c in df.columns}
    return Output(data, params, attrs)


def read_folder(path, provenance="provenance.json") -> Output:
    """Every file below a folder by its sha256 (CSV provenance sidecars left out); params
    from its provenance JSON."""
    data, attrs = {}, {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel == provenance:
                attrs = json.loads(Path(full).read_text(encoding="utf-8"))
                continue
            if rel.endswith((".csv.json", ".tsv.json", ".csv.gz.json")):
                continue  # a text table's provenance sidecar (command line, time): not data
            data[rel] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return Output(data, attrs.get("params"), attrs)


def read_checkpoint(path, params_keys=("arch", "in_chans", "init", "preprocessing")) -> Output:
    """A radlens checkpoint: its tensors as data, its recorded fields as params."""
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=True)
    data = {k: v.numpy() for k, v in ck["state_dict"].items()}
    return Output(data, {k: ck.get(k) for k in params_keys}, {k: v for k, v in ck.items() if k != "state_dict"})


def read_stdout(text: str) -> Output:
    return Output({"stdout": text}, None)


def assert_same_data(a: Output, b: Output, what: str = "") -> None:
    """The same names and exactly the same values (NaN equal to NaN)."""
    assert set(a.data) == set(b.data), f"{what}: outputs hold different items: {set(a.data) ^ set(b.data)}"
    for k in a.data:
        x, y = a.data[k], b.data[k]
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), f"{what}: {k} differs"
        elif isinstance(x, np.ndarray):
            assert x.shape == np.shape(y) and all(map(_same, x.ravel(), np.asarray(y).ravel())), f"{what}: {k} differs"
        else:
            assert _same(x, y), f"{what}: {k} differs: {x!r} != {y!r}"


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
        return True
    return x == y


# ------------------------------------------------------------------------------ the spec


@dataclass
class Spec:
    """How the harness runs one command.

    inputs(folder) -> {role: path}: writes the command's inputs into `folder`.
    argv(inputs, out, seed) -> arguments after the command name; `out` is a path or `-`;
        `seed` is None when the command takes none.
    read(path) -> Output: reads what the command wrote at `out` (for output "stdout": reads
        the printed text, e.g. `read_stdout`).
    output: "file", "folder" or "stdout" (the command prints its result, e.g. info).
    stdin_role: the input that `-` may replace (None: no input from stdin).
    seeded: the command takes --seed.
    seed_path: where the recorded parameters keep the seed, e.g. ("seed",) or ("init", "seed").
    stdout_data: besides its output file the command prints a result on stdout (cka's value);
        otherwise stdout must stay empty when the output is a file.
    """

    name: str
    inputs: Callable[[Path], dict]
    argv: Callable[[dict, str, int | None], list]
    read: Callable[[str], Output]
    output: str = "file"
    out_name: str = "out"
    stdin_role: str | None = None
    seeded: bool = False
    seed_path: tuple = ("seed",)
    stdout_data: bool = False

    def args(self, inputs, out, seed=None):
        return [self.name, *map(str, self.argv(inputs, str(out), seed if self.seeded else None))]


def copied(source: Path, roles: dict) -> Callable[[Path], dict]:
    """A Spec.inputs that copies prepared files ({role: file name in `source`}) into the
    run's folder, e.g. the outputs of a session-wide fixture."""
    import shutil

    def inputs(folder: Path) -> dict:
        for name in roles.values():
            shutil.copy(Path(source) / name, Path(folder) / name)
        return {role: Path(folder) / name for role, name in roles.items()}

    return inputs


def make_inputs(spec: Spec, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return spec.inputs(folder)


def _no_part_files(folder: Path) -> None:
    left = [f for f in os.listdir(folder) if ".part" in f]
    assert not left, f"temporary files left behind: {left}"


def run_to(cli, spec: Spec, folder: Path, inputs=None, seed: int | None = 0, stdin_role=None):
    """Run the command writing into `folder`; returns (result, Output)."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = dict(inputs or make_inputs(spec, folder))
    stdin = None
    if stdin_role:
        stdin = Path(inputs[stdin_role]).read_bytes()
        inputs[stdin_role] = "-"
    out = folder / spec.out_name
    r = cli(*spec.args(inputs, out if spec.output != "stdout" else "", seed), input=stdin)
    assert r.exit_code == 0, r
    if spec.output == "stdout":
        return r, spec.read(r.stdout)
    if not spec.stdout_data:
        assert r.stdout == "", f"stdout must carry data only when the output is a file: {r.stdout[:300]!r}"
    assert out.exists(), f"{spec.name} wrote no {out}"
    _no_part_files(folder)
    return r, spec.read(str(out))


# ------------------------------------------------------------------------------ the checks


def default_run(cli, spec: Spec, folder: Path) -> Output:
    _, out = run_to(cli, spec, folder)
    return out


def pipe_out(cli, spec: Spec, folder: Path) -> None:
    """`-o -` writes to stdout what `-o FILE` writes to the file."""
    inputs = make_inputs(spec, folder)
    _, want = run_to(cli, spec, folder / "file", inputs=inputs)
    r = cli(*spec.args(inputs, "-", 0))
    assert r.exit_code == 0, r
    piped = folder / ("piped" + Path(spec.out_name).suffix)
    piped.write_bytes(r.stdout_bytes)
    assert_same_data(want, spec.read(str(piped)), f"{spec.name} -o -")


def pipe_refused(cli, spec: Spec, folder: Path, *needles) -> None:
    """For an output that cannot stream (a checkpoint, a folder): `-o -` is a usage error."""
    inputs = make_inputs(spec, folder)
    r = cli(*spec.args(inputs, "-", 0))
    one_line_error(r, spec.name, 2, *needles)


def pipe_in(cli, spec: Spec, folder: Path) -> None:
    """`-` in place of spec.stdin_role reads that input from stdin, with the same result."""
    assert spec.stdin_role, f"{spec.name}: no input takes '-'"
    inputs = make_inputs(spec, folder)
    _, want = run_to(cli, spec, folder / "file", inputs=inputs)
    _, got = run_to(cli, spec, folder / "stdin", inputs=inputs, stdin_role=spec.stdin_role)
    assert_same_data(want, got, f"{spec.name} with {spec.stdin_role} from stdin")


def spaces(cli, spec: Spec, tmp_path: Path) -> None:
    """Inputs and output in a folder whose path has spaces give what a plain path gives."""
    _, want = run_to(cli, spec, tmp_path / "plain")
    _, got = run_to(cli, spec, tmp_path / "with spaces" / "and more")
    assert_same_data(want, got, f"{spec.name} under a path with spaces")


def _split_seed(params: dict, path: tuple):
    """(the seed at `path`, the parameters without it)."""
    rest = json.loads(json.dumps(params, default=str))
    node = rest
    for k in path[:-1]:
        node = node[k]
    return node.pop(path[-1]), rest


def determinism(cli, spec: Spec, tmp_path: Path):
    """Same seed: the same values and the same recorded parameters; another seed: that seed
    recorded, and nothing else recorded differently.

    Returns the Outputs of seeds 3, 3 and 4 for command-specific checks."""
    inputs = make_inputs(spec, tmp_path / "in")
    runs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        _, runs[tag] = run_to(cli, spec, tmp_path / tag, inputs=inputs, seed=seed)
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert_same_data(a, b, f"{spec.name} twice with seed 3")
    assert a.params == b.params, f"{spec.name}: recorded parameters differ between two same-seed runs"
    if spec.seeded:
        assert a.params is not None, f"{spec.name} records no parameters"
        seed_a, rest_a = _split_seed(a.params, spec.seed_path)
        seed_c, rest_c = _split_seed(c.params, spec.seed_path)
        assert (seed_a, seed_c) == (3, 4), f"{spec.name} records seed {seed_a}, {seed_c} for --seed 3, 4"
        assert rest_a == rest_c, "only the seed may differ between the recorded parameters"
    return a, b, c


def one_line_error(r, name: str, code: int, *needles) -> str:
    """Exit `code`, one `radlens <name>: error: ...` line naming every needle, no traceback."""
    assert r.exit_code == code, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f"radlens {name}: error: ")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert str(needle) in errors[0], (needle, errors[0])
    return errors[0]


def bad_input(cli, spec: Spec, folder: Path, args: list, code: int, *needles, input=None) -> str:
    """The command on a bad input: a one-line error with `code`, and nothing left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(folder))
    r = cli(spec.name, *map(str, args), input=input)
    line = one_line_error(r, spec.name, code, *needles)
    left = set(os.listdir(folder)) - before
    assert not left, f"{spec.name} left {left} after an error"
    return line

