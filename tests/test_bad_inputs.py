"""Issue 7: every bad input a new user can give gets a clear error and loses nothing.

Table-driven over the real CLI. Each case asserts: the exit code DESIGN.md gives (1 data,
2 usage), exactly one `radlens <cmd>: error: ...` line on stderr naming the culprit (a
batch command like extract-radiomics may list each failed case on its own line before
it), no Python traceback, and no output (nor a stray `.part` temporary) left behind.
The generic inputs (not a case table, truncated HDF5, duplicated columns, output exists,
missing output folder, stdin a terminal, NaN) run across every command that reads or
writes such files. Every command of the build has a spec here and every spec names a
command of the build (`test_specs_cover_exactly_the_commands`), so a command that is
missing, or new without bad inputs, fails instead of silently generating no cases.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field

import h5py
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import radlens_cli.main  # noqa: F401  - registers the subcommands
from radlens_cli.commands.app import app

COMMANDS = set(typer.main.get_command(app).commands)
QUICK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "radlens_cli", "radiomics",
                     "presets", "quick.yaml")
SMALL = ["--crop", "16,16,16", "--spacing", "1,1,2", "--device", "cpu"]


# --------------------------------------------------------------------------- the world

def _run(*args, input=None):
    r = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
    assert r.exit_code == 0, (args, r.stderr)
    return r


def _table(path, n, p, seed, prefix="case", rad=False, nan=None, dup=False, split=True):
    """A case table written straight with h5py (so duplicated columns can be written too)."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    vals = rng.normal(size=(n, p))
    if rad:
        cols = [f"{m}/original_{fam}_F{k}" for m in ("t2", "adc") for fam in ("firstorder", "glcm")
                for k in range(p // 4)]
    else:
        cols = [f"emb_{j:04d}" for j in range(p)]
    if dup:
        cols[1] = cols[0]
    if nan is not None:
        vals[nan] = np.nan
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["radlens_schema"] = "case-table/1"
        f.attrs["radlens_version"] = "test"
        f.create_dataset("case_id", data=np.array(ids, dtype=object), dtype=s)
        f.create_dataset("values", data=vals)
        f.create_dataset("columns", data=np.array(cols, dtype=object), dtype=s)
        if split:
            sp = (["train"] * 7 + ["val"] + ["test"] * 2) * (n // 10 + 1)
            f.create_dataset("split", data=np.array(sp[:n], dtype=object), dtype=s)
        if rad:
            parts = [c.split("/", 1) for c in cols]
            meta = {"modality": [m for m, _ in parts], "image_type": ["original"] * p,
                    "family": [r.split("_")[1] for _, r in parts], "feature": [r.split("_", 2)[2] for _, r in parts]}
            for k, v in meta.items():
                f.create_dataset(f"column_{k}", data=np.array(v, dtype=object), dtype=s)
    return str(path)


def _truncate(src, dst):
    data = open(src, "rb").read()
    with open(dst, "wb") as fh:
        fh.write(data[: len(data) // 2])
    return str(dst)


def _manifest(src, dst, edit):
    import pandas as pd

    df = pd.read_csv(src, dtype=str)
    df = edit(df)
    df.to_csv(dst, index=False)
    return str(dst)


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """Every input file the cases use, built once: a 4-case phantom cohort, tiny tables, an
    encoder, share models, decoders and broken variants of each."""
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("bad inputs")
    f = {"dir": d, "params": QUICK}
    _run("synth", "-o", d / "c", "--cases", "4", "--size", "24,24,8", "--spacing", "1,1,2")
    cohort = f["manifest"] = str(d / "c" / "cohort.csv")
    c0 = d / "c" / "case000"
    # images and masks gone wrong, each in a one-case manifest (so nothing is written)
    def one(name, **cols):
        """m_<name>: case000 alone, broken (extract writes nothing when no case succeeds);
        M_<name>: the four cases with case000 broken (finetune stops at it; extract and embed
        would write the other three)."""
        def edit(df):
            for k, v in cols.items():
                df.loc[0, k] = v
            return df
        _manifest(cohort, d / "c" / f"all_{name}.csv", edit)
        f[f"M_{name}"] = str(d / "c" / f"all_{name}.csv")
        return _manifest(cohort, d / "c" / f"{name}.csv", lambda df: edit(df).iloc[:1])
    f["m_missing_image"] = one("missing_image", adc="case000/nowhere_adc.nii.gz")
    (d / "c" / "corrupt_t2.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not a NIfTI file")
    f["m_corrupt_image"] = one("corrupt_image", t2="corrupt_t2.nii.gz")
    gland = sitk.ReadImage(str(c0 / "gland.nii.gz"))
    empty = sitk.Image(gland.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(gland)
    sitk.WriteImage(empty, str(d / "c" / "empty_gland.nii.gz"))
    f["m_empty_mask"] = one("empty_mask", gland="empty_gland.nii.gz")
    far = sitk.Image(gland)
    far.SetOrigin(tuple(o + 500.0 for o in gland.GetOrigin()))  # no overlap with the images
    sitk.WriteImage(far, str(d / "c" / "far_gland.nii.gz"))
    f["m_geometry"] = one("geometry", gland="far_gland.nii.gz")
    f["m_no_case_id"] = _manifest(cohort, d / "c" / "no_case_id.csv", lambda df: df.rename(columns={"case_id": "patient"}))
    f["m_dup_ids"] = _manifest(cohort, d / "c" / "dup_ids.csv", lambda df: df.assign(
        case_id=["case000", "case001", "case001", "case003"]))
    f["m_missing_target"] = _manifest(cohort, d / "c" / "missing_target.csv",
                                      lambda df: df.assign(pirads=["1", "", "3", "4"]))
    (d / "rejected.yaml").write_text("setting:\n  binWidth: ten\nimageType:\n  Original: {}\n"
                                     "featureClass:\n  firstorder: []\n")
    f["bad_params"] = str(d / "rejected.yaml")
    f["m_nowhere"] = str(d / "nowhere.yaml")
    # encoders
    _run("init-encoder", "--arch", "atto", "--in-chans", "2", "-o", d / "enc.pt")
    f["enc"] = str(d / "enc.pt")
    torch.save({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, d / "other_arch.pt")
    f["other_arch"] = str(d / "other_arch.pt")
    _truncate(f["enc"], d / "trunc_enc.pt")
    f["trunc_enc"] = str(d / "trunc_enc.pt")
    (d / "notes.pt").write_text("these are my notes, not a checkpoint\n")
    f["text_enc"] = str(d / "notes.pt")
    f["stdin"] = "-"
    from radlens_cli.encoders.convnextv2 import build_encoder

    sd = build_encoder("atto", 2).state_dict()
    torch.save({k: v for k, v in sd.items() if k != "stages.2.1.pwconv1.weight"}, d / "missing_weights.pt")
    f["missing_weights"] = str(d / "missing_weights.pt")
    # tables: 30 cases so the lens commands have train/val/test cases
    f["emb"] = _table(d / "emb.h5", 30, 8, 1)
    f["emb2"] = _table(d / "emb2.h5", 30, 8, 2)
    f["rad"] = _table(d / "rad.h5", 30, 8, 3, rad=True)
    f["emb_nan"] = _table(d / "emb_nan.h5", 30, 8, 1, nan=(4, 2))
    f["emb_inf"] = _table(d / "emb_inf.h5", 30, 8, 1)
    with h5py.File(f["emb_inf"], "r+") as h:
        v = h["values"][()]
        v[4, 2] = np.inf
        h["values"][...] = v
    f["rad_nan"] = _table(d / "rad_nan.h5", 30, 8, 3, rad=True, nan=(slice(None), 5))
    f["dup"] = _table(d / "dup.h5", 30, 8, 1, dup=True)
    f["emb_disjoint"] = _table(d / "emb_disjoint.h5", 30, 8, 1, prefix="other")
    f["emb_partial"] = _table(d / "emb_partial.h5", 20, 8, 1)  # case000..case019 of 30
    with h5py.File(d / "plain.h5", "w") as h:
        h.create_dataset("data", data=np.zeros((3, 3)))
    f["plain"] = str(d / "plain.h5")
    (d / "targets.csv").write_text("case_id,pirads\n" + "".join(f"case{i:03d},{1 + i % 3}\n" for i in range(30)))
    f["targets"] = str(d / "targets.csv")
    (d / "subjects.csv").write_text("case_id,subject\n" + "".join(f"case{i:03d},s{i // 3}\n" for i in range(30)))
    f["subjects"] = str(d / "subjects.csv")
    (d / "pyrad_t2.csv").write_text("ID,Image,Mask,diagnostics_Versions_PyRadiomics,original_firstorder_Mean\n"
                                    + "".join(f"case{i:03d},c{i}.nii,m{i}.nii,3.1,{i * 1.5}\n" for i in range(30)))
    f["pyrad"] = str(d / "pyrad_t2.csv")
    if "fit-share" in COMMANDS:
        fs = ["--epochs", "2", "--hidden", "4", "--batch-size", "0", "--device", "cpu"]
        _run("fit-share", f["emb"], f["rad"], "-o", d / "share.h5", *fs)
        _run("fit-share", f["emb"], f["rad"], "-o", d / "share2.h5", *fs, "--seed", "7")
        f["share"] = str(d / "share.h5")
        _run("decode", f["share"], f["emb"], f["rad"], "-o", d / "dec_pre.h5")
        _run("decode", f["share"], f["emb2"], f["rad"], "-o", d / "dec_ft.h5")
        _run("decode", d / "share2.h5", f["emb2"], f["rad"], "-o", d / "dec_other.h5")
        f.update(dec_pre=str(d / "dec_pre.h5"), dec_ft=str(d / "dec_ft.h5"), dec_other=str(d / "dec_other.h5"))
        _run("compare", f["dec_pre"], f["dec_ft"], "-o", d / "delta.csv")
        _run("stats", f["dec_pre"], f["dec_ft"], "-o", d / "table.csv")
        f.update(delta=str(d / "delta.csv"), table=str(d / "table.csv"))
    _run("correlate", f["emb"], f["rad"], "-o", d / "corr.h5")
    _run("correlate", f["emb2"], f["rad"], "-o", d / "corr2.h5")
    f.update(corr=str(d / "corr.h5"), corr2=str(d / "corr2.h5"))
    _run("extract-radiomics", cohort, "--modalities", "t2", "--mask", "gland", "--params", QUICK,
         "-o", d / "part.h5")
    f["part"] = str(d / "part.h5")
    for k in ("emb", "rad", "share", "dec_pre", "corr", "part"):
        if k in f:
            _truncate(f[k], d / f"trunc_{k}.h5")
            f[f"trunc_{k}"] = str(d / f"trunc_{k}.h5")
    return f




# --------------------------------------------------------------------------- the commands

FOLDER_OUTPUTS = ("synth", "perturb")  # commands whose output is a folder


@dataclass
class Spec:
    argv: list            # with {placeholders}: files of `w`, {out}
    out: str = ""         # output file name ("" when the command writes nothing)
    tables: list = field(default_factory=list)   # placeholders that are radlens HDF5 inputs
    case_tables: list = field(default_factory=list)  # ... that are case tables
    needs: str = ""       # a file of `w` that must exist


IMG = ["--modalities", "t2,adc", "--mask", "gland"]
SPECS = {
    "synth": Spec(["-o", "{out}", "--cases", "1", "--size", "8,8,4"], out="phantom"),
    "perturb": Spec(["{manifest}", *IMG, "--replicates", "1", "-o", "{out}"], out="pert"),
    "extract-radiomics": Spec(["{manifest}", *IMG, "--params", "{params}", "-o", "{out}"], out="r.h5"),
    "import-pyradiomics": Spec(["t2={pyrad}", "--id-column", "ID", "-o", "{out}"], out="r.h5"),
    "merge": Spec(["{part}", "-o", "{out}"], out="m.h5", tables=["part"], case_tables=["part"]),
    "init-encoder": Spec(["--arch", "atto", "--in-chans", "2", "-o", "{out}"], out="e.pt"),
    "layers": Spec(["{enc}", "--crop", "32,32,16"]),  # reads a checkpoint, writes only to stdout
    "embed": Spec(["{manifest}", *IMG, "--encoder", "{enc}", *SMALL, "-o", "{out}"], out="emb.h5"),
    "saliency": Spec(["{manifest}", "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder",
                      "tests.saliency.models:tiny_classifier", "--methods", "gradcam", *SMALL, "-o", "{out}"],
                     out="sal.csv"),
    "finetune": Spec(["{manifest}", *IMG, "--encoder", "{enc}", *SMALL, "--task", "classify",
                      "--target", "pirads", "--epochs", "1", "--warmup-epochs", "0", "-o", "{out}"], out="ft.pt"),
    "fit-share": Spec(["{emb}", "{rad}", "--epochs", "2", "--hidden", "4", "--device", "cpu", "-o", "{out}"],
                      out="share.h5", tables=["emb", "rad"], case_tables=["emb", "rad"]),
    "decode": Spec(["{share}", "{emb}", "{rad}", "-o", "{out}"], out="dec.h5", tables=["share", "emb", "rad"],
                   case_tables=["emb", "rad"]),
    "compare": Spec(["{dec_pre}", "{dec_ft}", "-o", "{out}"], out="delta.csv", tables=["dec_pre"]),
    "stats": Spec(["{dec_pre}", "{dec_ft}", "-o", "{out}"], out="table.csv", tables=["dec_pre"]),
    "correlate": Spec(["{emb}", "{rad}", "-o", "{out}"], out="corr.h5", tables=["emb", "rad"],
                      case_tables=["emb", "rad"]),
    "correlate-summary": Spec(["{corr}", "{corr2}", "-o", "{out}"], out="summary.csv", tables=["corr"]),
    "cka": Spec(["{emb}", "{emb2}", "-o", "{out}"], out="cka.csv", tables=["emb"], case_tables=["emb"]),
    "stability": Spec(["{rad}", "--manifest", "{subjects}", "-o", "{out}"], out="icc.csv", tables=["rad"],
                      case_tables=["rad"]),
    "probe": Spec(["{emb}", "--manifest", "{targets}", "--target", "pirads", "--trees", "5",
                   "-o", "{out}"], out="probe.csv", tables=["emb"], case_tables=["emb"]),
    "report": Spec(["--radiomics", "{rad}", "--compare", "{delta}", "--stats", "{table}", "-o", "{out}"],
                   out="report.html", tables=["rad"], case_tables=["rad"], needs="delta"),
    "info": Spec(["{rad}"], tables=["rad"]),  # info shows any HDF5 file, duplicates included
}


def _present(name):
    return name in COMMANDS and name in SPECS


def test_specs_cover_exactly_the_commands():
    assert set(SPECS) - COMMANDS == set(), "specs for commands this build does not have"
    assert COMMANDS - set(SPECS) == set(), "commands without bad-input specs: add them to SPECS"


def _argv(w, name, out_dir, subst=None, extra=()):
    spec = SPECS[name]
    files = dict(w)
    files.update(subst or {})
    files["out"] = str(out_dir / spec.out) if spec.out else ""
    return [name] + [a.format(**files) for a in spec.argv] + list(extra)


def _out(tmp_path, name):
    return tmp_path / SPECS[name].out if SPECS[name].out else None


def clear_error(r, code, out, *needles):
    """The one error line, the exit code, no traceback, nothing left behind."""
    assert r.exit_code == code, r
    assert "Traceback" not in r.stderr + r.stdout, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("Try '")]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith("radlens "), errors[0]
    # a batch command may list failed (case, modality) lines before its one error line
    assert all(" failed" in ln or ln in errors for ln in lines), r.stderr
    text = "\n".join(lines)
    for n in needles:
        assert str(n) in text, (n, r.stderr)
    if out:
        folder = os.path.dirname(str(out))
        if os.path.isdir(folder):
            assert not os.path.exists(out), out
            assert not [f for f in os.listdir(folder) if ".part" in f], os.listdir(folder)


# --------------------------------------------------------------------------- generic cases

def _cases(kind):
    out = []
    for name, spec in SPECS.items():
        if not _present(name) or (spec.needs and name != "report" and not _present("fit-share")):
            continue
        if name == "report" and not _present("compare"):
            continue
        roles = {"tables": spec.tables, "case_tables": spec.case_tables, "out": [spec.out] if spec.out else []}[kind]
        out += [pytest.param(name, role, id=f"{name}-{role}" if kind != "out" else name) for role in roles]
    return out


@pytest.mark.parametrize("name,role", _cases("tables"))
def test_not_a_radlens_file(cli, w, tmp_path, name, role):
    """An HDF5 file that is not a radlens file, in place of each HDF5 input."""
    r = cli("-q", *_argv(w, name, tmp_path, {role: w["plain"]}))
    if name == "info":  # info describes any HDF5 file, saying it is not a radlens one
        assert r.exit_code == 0 and "plain.h5: not a radlens file" in r.stdout, r
        return
    clear_error(r, 1, _out(tmp_path, name), "plain.h5", "not a radlens file")


@pytest.mark.parametrize("name,role", _cases("tables"))
def test_truncated_hdf5(cli, w, tmp_path, name, role):
    r = cli("-q", *_argv(w, name, tmp_path, {role: w[f"trunc_{role}"]}))
    clear_error(r, 1, _out(tmp_path, name), f"trunc_{role}.h5")


@pytest.mark.parametrize("name,role", _cases("case_tables"))
def test_duplicated_columns(cli, w, tmp_path, name, role):
    r = cli("-q", *_argv(w, name, tmp_path, {role: w["dup"]}))
    clear_error(r, 1, _out(tmp_path, name), "dup.h5", "duplicate column", "emb_0000")


@pytest.mark.parametrize("name,role", _cases("tables"))
def test_input_missing(cli, w, tmp_path, name, role):
    r = cli("-q", *_argv(w, name, tmp_path, {role: str(tmp_path / "nowhere.h5")}))
    clear_error(r, 1, _out(tmp_path, name), "nowhere.h5", "not found")


class _Terminal(io.BytesIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("name,role", _cases("tables"))
def test_stdin_is_a_terminal(cli, w, tmp_path, monkeypatch, name, role):
    """`-` for a binary input while stdin is a terminal: a usage error, not a hang."""
    import typer.testing

    monkeypatch.setattr(typer.testing, "make_input_stream", lambda input, charset: _Terminal(b""))
    r = cli("-q", *_argv(w, name, tmp_path, {role: "-"}))
    # report takes one `-` too (issue 25; it hashes the piped bytes): the same usage error
    clear_error(r, 2, _out(tmp_path, name), "stdin is a terminal")


@pytest.mark.parametrize("name,role", _cases("out"))
def test_output_exists(cli, w, tmp_path, name, role):
    out = tmp_path / SPECS[name].out
    if name in FOLDER_OUTPUTS:
        out.mkdir()
        (out / "keep.txt").write_text("keep")
    else:
        out.write_text("keep")
    r = cli("-q", *_argv(w, name, tmp_path))
    assert r.exit_code == 1, r
    clear_error(r, 1, None, str(out), "--force")
    assert (out / "keep.txt" if name in FOLDER_OUTPUTS else out).read_text() == "keep"
    assert not [f for f in os.listdir(tmp_path) if ".part" in f]


@pytest.mark.parametrize("name,role", _cases("out"))
def test_output_folder_missing(cli, w, tmp_path, name, role):
    r = cli("-q", *_argv(w, name, tmp_path / "no such folder"))
    clear_error(r, 1, None, "no such folder")
    assert not (tmp_path / "no such folder").exists()


# NaN / inf: an error where the command needs finite numbers, the documented drop elsewhere
NAN = [  # command, substitution, exit code, needles
    ("fit-share", {"emb": "emb_nan"}, 1, ["emb_nan.h5", "case004", "emb_0002"]),
    ("fit-share", {"emb": "emb_inf"}, 1, ["emb_inf.h5", "case004", "emb_0002"]),
    ("decode", {"emb": "emb_nan"}, 1, ["emb_nan.h5", "case004", "emb_0002"]),
    ("decode", {"emb": "emb_inf"}, 1, ["emb_inf.h5", "case004", "emb_0002"]),
    ("correlate", {"emb": "emb_nan"}, 0, ["emb_0002"]),         # excluded and listed
    ("cka", {"emb": "emb_nan"}, 0, ["emb_0002"]),               # dropped with a warning
    ("probe", {"emb": "emb_nan"}, 0, ["emb_0002"]),             # dropped with a warning
    ("merge", {"part": "emb_nan"}, 0, []),  # NaN carried over unchanged (fit-share drops such columns)
    ("fit-share", {"rad": "rad_nan"}, 0, ["adc/original_firstorder_F1"]),  # dropped, listed
]


@pytest.mark.parametrize("name,subst,code,needles",
                         [pytest.param(*c, id=f"{c[0]}-{'-'.join(c[1].values())}") for c in NAN if _present(c[0])])
def test_non_finite_values(cli, w, tmp_path, name, subst, code, needles):
    r = cli(*_argv(w, name, tmp_path, {k: w[v] for k, v in subst.items()}))
    out = _out(tmp_path, name)
    if code:
        clear_error(r, code, out, *needles)
    else:  # the documented behaviour: the column is left out, with a warning naming it
        assert r.exit_code == 0, r
        assert out.exists()
        warned = [ln for ln in r.stderr.splitlines() if "warning" in ln]
        assert all(any(n in ln for ln in warned) for n in needles), r.stderr
        if name == "merge":
            from radlens_cli.io.tables import read_table

            assert np.isnan(read_table(str(out)).values).sum() == 1


# --------------------------------------------------------------------------- specific cases

def _case(name, subst=None, extra=(), code=1, needles=(), cmd=None, id=None):
    return pytest.param(cmd or name, subst or {}, list(extra), code, list(needles), id=id)


IMAGE_CMDS = ("extract-radiomics", "embed", "finetune", "saliency")
SPECIFIC = [
    _case("perturb", {"manifest": "m_missing_image"}, (), 1, ["case000", "nowhere_adc.nii.gz"],
          id="perturb-missing-image"),
    _case("perturb", {"manifest": "m_corrupt_image"}, (), 1, ["case000", "corrupt_t2.nii.gz"],
          id="perturb-corrupt-image"),
    _case("perturb", {"manifest": "m_empty_mask"}, (), 1, ["case000", "empty_gland.nii.gz", "empty"],
          id="perturb-empty-mask"),
    _case("perturb", {}, ("--mask", "zones:3"), 1, ["zones.nii.gz", "3", "absent"], id="perturb-absent-label"),
    _case("perturb", {}, ("--modalities", "t2,flair"), 2, ["flair"], id="perturb-unknown-column"),
    _case("stability", {"subjects": "targets"}, (), 2, ["targets.csv", "subject"], id="stability-no-group"),
]
for _c in IMAGE_CMDS:
    _m = "M_" if _c == "finetune" else "m_"  # extract, embed: case000 alone; finetune: 4 cases
    SPECIFIC += [
        _case(_c, {"manifest": _m + "missing_image"}, (), 1, ["case000", "nowhere_adc.nii.gz"],
              id=f"{_c}-missing-image"),
        _case(_c, {"manifest": _m + "corrupt_image"}, (), 1, ["case000", "corrupt_t2.nii.gz"],
              id=f"{_c}-corrupt-image"),
        _case(_c, {"manifest": _m + "empty_mask"}, (), 1, ["case000", "empty_gland.nii.gz", "empty"],
              id=f"{_c}-empty-mask"),
        # the mask lies 500 mm away from its images
        _case(_c, {"manifest": _m + "geometry"}, (), 1, ["case000", "far_gland.nii.gz"], id=f"{_c}-mask-geometry"),
        _case(_c, {}, ("--mask", "zones:3"), 1, ["zones.nii.gz", "3", "absent"], id=f"{_c}-absent-label"),
        _case(_c, {"manifest": "m_no_case_id"}, (), 1, ["no_case_id.csv", "case_id"], id=f"{_c}-no-case-id"),
        _case(_c, {"manifest": "m_dup_ids"}, (), 1, ["dup_ids.csv", "case001"], id=f"{_c}-duplicate-ids"),
        _case(_c, {}, ("--modalities", "t2,flair"), 2, ["flair"], id=f"{_c}-unknown-column"),
    ]
SPECIFIC += [
    _case("extract-radiomics", {"params": "bad_params"}, (), 1, ["rejected.yaml", "binWidth"], id="params-schema"),
    _case("extract-radiomics", {"params": "m_nowhere"}, (), 1, ["nowhere.yaml"], id="params-missing"),
    _case("extract-radiomics", {}, ("--mask", "prostate"), 2, ["prostate"], id="extract-unknown-mask-column"),
    _case("extract-radiomics", {}, ("--mask", "zones:#x"), 2, ["zones:#x"], id="extract-bad-mask-spec"),
    _case("extract-radiomics", {"manifest": "m_nowhere"}, (), 1, ["nowhere.yaml"], id="manifest-missing"),
    _case("finetune", {}, ("--target", "gleason"), 2, ["gleason"], id="finetune-unknown-target"),
    _case("finetune", {}, ("--task", "cluster"), 2, ["cluster"], id="finetune-unknown-task"),
    _case("embed", {}, ("--crop", "16,16"), 2, ["--crop"], id="embed-bad-crop"),
    _case("extract-radiomics", {}, ("--part-id", "2", "--num-parts", "2"), 2, ["--part-id"], id="extract-part-id"),
    _case("embed", {}, ("--part-id", "3", "--num-parts", "2"), 2, ["--part-id"], id="embed-part-id"),
    _case("embed", {"enc": "other_arch"}, (), 1, ["other_arch.pt"], id="embed-other-architecture"),
    _case("embed", {}, ("--arch", "convnextv2_tiny"), 1, ["enc.pt", "tiny"], id="embed-arch-mismatch"),
    _case("embed", {"enc": "missing_weights"}, (), 1, ["missing_weights.pt", "stages.2.1.pwconv1.weight"], id="embed-missing-weights"),
    _case("finetune", {"enc": "other_arch"}, (), 1, ["other_arch.pt"], id="finetune-other-architecture"),
    _case("finetune", {"enc": "missing_weights"}, (), 1, ["missing_weights.pt", "stages.2.1.pwconv1.weight"],
          id="finetune-missing-weights"),
    _case("embed", {"enc": "trunc_enc"}, (), 1, ["trunc_enc.pt"], id="embed-truncated-checkpoint"),
    _case("finetune", {"enc": "trunc_enc"}, (), 1, ["trunc_enc.pt"], id="finetune-truncated-checkpoint"),
    _case("embed", {"enc": "text_enc"}, (), 1, ["notes.pt"], id="embed-not-a-checkpoint"),
    _case("finetune", {"enc": "text_enc"}, (), 1, ["notes.pt"], id="finetune-not-a-checkpoint"),
    _case("extract-radiomics", {"manifest": "stdin"}, (), 2, ["manifest"], id="extract-manifest-stdin"),
    _case("embed", {"manifest": "stdin"}, (), 2, ["manifest"], id="embed-manifest-stdin"),
    _case("finetune", {"manifest": "stdin"}, (), 2, ["manifest"], id="finetune-manifest-stdin"),
    _case("finetune", {"manifest": "m_missing_target"}, (), 1, ["pirads", "case001"], id="finetune-target-missing"),
    _case("probe", {"targets": "m_no_case_id"}, (), 1, ["no_case_id.csv", "case_id"], id="probe-no-case-id"),
    _case("probe", {}, ("--target", "gleason"), 2, ["gleason"], id="probe-unknown-column"),
    _case("fit-share", {"rad": "emb_disjoint"}, (), 1, ["emb_disjoint.h5", "other000"], id="fit-share-disjoint"),
    _case("fit-share", {"emb": "emb_partial"}, (), 1, ["case020"], id="fit-share-partial-overlap"),
    _case("decode", {"emb": "emb_disjoint"}, (), 1, ["emb_disjoint.h5"], id="decode-disjoint"),
    _case("decode", {"emb": "emb_partial"}, (), 1, ["case020"], id="decode-partial-overlap"),
    _case("correlate", {"emb": "emb_disjoint"}, (), 1, ["emb_disjoint.h5", "other000"], id="correlate-disjoint"),
    _case("correlate", {"emb": "emb_partial"}, (), 1, ["case020"], id="correlate-partial-overlap"),
    _case("cka", {"emb2": "emb_disjoint"}, (), 1, ["emb_disjoint.h5"], id="cka-disjoint"),
    _case("probe", {"emb": "emb_disjoint"}, (), 1, ["emb_disjoint.h5"], id="probe-disjoint"),
    # the share model kept a column that is all NaN in these radiomics: every case unusable
    _case("decode", {"rad": "rad_nan"}, (), 1, ["rad_nan.h5", "adc/original_firstorder_F1"], id="decode-nan-radiomics"),
    _case("compare", {"dec_ft": "dec_other"}, (), 1, ["dec_other.h5", "share"], id="compare-other-share-model"),
    _case("stats", {"dec_ft": "dec_other"}, (), 1, ["dec_other.h5", "share"], id="stats-other-share-model"),
]


@pytest.mark.parametrize("name,subst,extra,code,needles", [c for c in SPECIFIC if _present(c.values[0])])
def test_bad_input(cli, w, tmp_path, name, subst, extra, code, needles):
    r = cli("-q", *_argv(w, name, tmp_path, {k: w[v] for k, v in subst.items()}, extra))
    clear_error(r, code, _out(tmp_path, name), *needles)


def n_bad_inputs() -> int:
    """How many bad inputs this file tries (its parametrized cases)."""
    present = [c for c in SPECIFIC if _present(c.values[0])]
    nan = [c for c in NAN if _present(c[0])]
    return 4 * len(_cases("tables")) + len(_cases("case_tables")) + 2 * len(_cases("out")) + len(nan) + len(present)


def test_readme_count_is_current():
    """The README's "N bad inputs tried" is this file's count."""
    import glob
    import re

    from tests.conftest import REPO

    said = {}
    for path in [REPO / "README.md", *map(type(REPO), glob.glob(str(REPO / "docs" / "**" / "*.md"), recursive=True))]:
        if path.is_file():
            for m in re.finditer(r"(\d+) bad inputs tried", path.read_text(encoding="utf-8")):
                said[str(path)] = int(m.group(1))
    assert said, "no README text says how many bad inputs are tried"
    assert all(v == n_bad_inputs() for v in said.values()), (said, n_bad_inputs())
