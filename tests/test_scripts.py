"""radlens in scripts, Makefiles and SLURM array jobs, through the real executable.

The shipped examples/slurm scripts run under a fake `sbatch` (tests/fake_sbatch.py)
that executes every array task in turn and honours afterok dependencies.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import h5py
import numpy as np
import pytest

from radlens_cli.io.tables import read_table
from tests.conftest import REPO
from tests.encoders.conftest import write_cohort

TINY = "imageType: {Original: {}}\nfeatureClass: {firstorder: []}\nsetting: {binWidth: 25, label: 1}\n"


@pytest.fixture
def bin_dir(tmp_path):
    """PATH entries: `radlens` (this checkout) and the fake `sbatch`."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, body in (("radlens", f'exec "{sys.executable}" -m radlens_cli "$@"'),
                       ("sbatch", f'exec "{sys.executable}" "{REPO}/tests/fake_sbatch.py" "$@"')):
        p = d / name
        p.write_text(f"#!/bin/bash\n{body}\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return d


def env_with(bin_dir, tmp_path, **extra):
    env = dict(os.environ)
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1",
                "FAKE_SLURM_DIR": str(tmp_path)})
    for k in [k for k in env if k.startswith("SLURM_")]:
        del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def test_slurm_examples_end_to_end_with_failures_and_idle_tasks(tmp_path, bin_dir):
    """submit.sh as written: 3 cases, one broken, 5 radiomics tasks (2 with no case), a step
    array for embeddings; relative paths from the submission folder; every merge runs."""
    sub = tmp_path / "project"
    cohort = sub / "data"
    write_cohort(str(cohort), n=3)
    os.remove(cohort / "p01_adc.nii.gz")  # p01 fails in both extraction and embedding
    (sub / "tiny.yaml").write_text(TINY)
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    save_radlens_checkpoint(str(sub / "pre.pt"), build_encoder("atto", 3), "convnextv2_atto", 3, None)
    env = env_with(bin_dir, tmp_path, MANIFEST="data/cohort.csv", PARAMS="tiny.yaml", WORK="work", PRE="pre.pt",
                   RAD_ARRAY="0-3", EMB_ARRAY="0-3:2", DEVICE="cpu",
                   EMBED_OPTS="--crop 16,32,32 --spacing 1,1,2")
    r = subprocess.run(["bash", str(REPO / "examples/slurm/submit.sh")], cwd=sub, env=env, capture_output=True,
                       text=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr
    jobs = json.load(open(tmp_path / "jobs.json"))["jobs"]
    logs = {p: (sub / "logs" / p).read_text(encoding="utf-8", errors="replace") for p in os.listdir(sub / "logs")}
    assert list(jobs.values()) == ["COMPLETED"] * 4, (jobs, "\n".join(f"{k}: {v}" for k, v in logs.items()))
    assert any("nothing to do: part 3 of 4" in t for t in logs.values())
    assert any("part 1 of 4: 1 case(s)" in t and "case p01" in t for t in logs.values())

    rad = read_table(str(sub / "work/radiomics.h5"))
    assert list(rad.case_id) == ["p00", "p02"]
    a = attrs(sub / "work/radiomics.h5")
    assert {f["case_id"] for f in json.loads(a["failures"])} == {"p01"} and "radlens_part" not in a
    assert json.loads(a["inputs"])["manifest"]["path"] == "data/cohort.csv"
    emb = read_table(str(sub / "work/emb-pre.h5"))
    assert list(emb.case_id) == ["p00", "p02"] and emb.values.shape[1] == 320
    p = json.loads(attrs(sub / "work/emb-pre.h5")["params"])
    assert p["parts"] == [0, 1] and p["layer"] == "final" and p["encoder_fingerprint"]
    assert np.isfinite(emb.values).all()

    # without --keep-going a failed case blocks the merge: exit 1, no part, afterok never met
    shutil.rmtree(sub / "work")
    text = (REPO / "examples/slurm/extract.sbatch").read_text().replace(" --keep-going", "")
    strict = sub / "strict.sbatch"
    strict.write_text(text)
    r = subprocess.run(["sbatch", "--parsable", "--array=0-0", str(strict)], cwd=sub, env=env,
                       capture_output=True, text=True, encoding="utf-8", errors="replace")
    job = r.stdout.strip()
    r = subprocess.run(["sbatch", "--parsable", f"--dependency=afterok:{job}",
                        str(REPO / "examples/slurm/merge.sbatch")], cwd=sub, env=env, capture_output=True,
                       text=True, encoding="utf-8", errors="replace")
    jobs = json.load(open(tmp_path / "jobs.json"))["jobs"]
    assert jobs[job] == "FAILED" and jobs[r.stdout.strip()] == "DependencyNeverSatisfied"
    assert sorted(os.listdir(sub / "work/parts")) == ["failures-000.csv", "failures-000.csv.json"]


def test_makefile_stops_at_a_failing_case_and_resumes(tmp_path, bin_dir):
    """make stops at the failed case, the target is not made (so the next make does not go
    on with a partial cohort), and the rerun after the fix takes the rest from the cache."""
    write_cohort(str(tmp_path / "c"), n=3)
    (tmp_path / "tiny.yaml").write_text(TINY)
    saved = tmp_path / "saved.nii.gz"
    shutil.move(tmp_path / "c/p01_t2.nii.gz", saved)
    (tmp_path / "Makefile").write_text(
        "all: info.txt\n"
        "rad.h5: c/cohort.csv\n"
        "\tradlens extract-radiomics c/cohort.csv --modalities t2 --mask gland --params tiny.yaml "
        "--cache-dir cache -o $@ -f\n"
        "info.txt: rad.h5\n"
        "\tradlens info rad.h5 > $@\n")
    env = env_with(bin_dir, tmp_path)
    for _ in range(2):  # a second make does not go on with a partial table
        r = subprocess.run(["make", "-s"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           encoding="utf-8", errors="replace")
        assert r.returncode != 0 and "1 of 3 case(s) failed (p01" in r.stderr, r.stderr
        assert not (tmp_path / "rad.h5").exists() and not (tmp_path / "info.txt").exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".rad.h5")]  # no temporary left
    shutil.move(saved, tmp_path / "c/p01_t2.nii.gz")
    r = subprocess.run(["make", "-s"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr
    assert "2 of 3 task(s) taken from the cache" in r.stderr
    assert read_table(str(tmp_path / "rad.h5")).n_cases == 3


# ---------------------------------------------------------------- conventions through the CLI

def test_plain_progress_lines_off_a_terminal(cli, tmp_path, monkeypatch):
    from tests.radiomics.conftest import make_cohort

    manifest = make_cohort(tmp_path / "c", n_cases=4)
    (tmp_path / "tiny.yaml").write_text(TINY)
    args = ["extract-radiomics", manifest, "--modalities", "t2", "--mask", "zones", "--params", tmp_path / "tiny.yaml"]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("RADLENS_PROGRESS_SECONDS", "0")  # no minimum gap between the 5 % lines
    r = cli(*args, "-o", tmp_path / "a.h5")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("radlens: extract ")]
    # every 5 %: after each of the 4 tasks, the last with the total time
    assert r.exit_code == 0 and len(lines) == 4, r
    assert lines[0].startswith("radlens: extract 1/4 task (25%), ") and " left" in lines[0]
    assert "task/s" in lines[0] or "s/task" in lines[0]
    assert lines[-1].startswith("radlens: extract 4/4 task (100%)") and "done in" in lines[-1]
    monkeypatch.delenv("RADLENS_PROGRESS_SECONDS")
    r = cli(*args, "-o", tmp_path / "a2.h5")  # a fast run: the final line only
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("radlens: extract ")]
    assert r.exit_code == 0 and len(lines) == 1 and "done in" in lines[0], r
    r = cli(*args, "-o", tmp_path / "b.h5", "-q")  # -q after the subcommand
    assert r.exit_code == 0 and r.stderr == "", r
    monkeypatch.setenv("TQDM_DISABLE", "1")
    r = cli(*args, "-o", tmp_path / "c.h5")
    assert r.exit_code == 0 and "radlens: extract " not in r.stderr and "wrote 4 case(s)" in r.stderr


def test_output_format_follows_the_extension(cli, tmp_path):
    from tests.conftest import make_table
    from radlens_cli.io.tables import write_table

    src = tmp_path / "t.h5"
    write_table(make_table(n=6, p=3), str(src))
    man = tmp_path / "m.csv"
    man.write_text("case_id,t2,gland\na,a.nii,g.nii\n")
    for bad in ("x.parquet", "x.txt", "noext"):
        r = cli("merge", src, "-o", tmp_path / bad)
        assert r.exit_code == 2 and "unknown table format" in r.stderr and bad in r.stderr, r
        assert not (tmp_path / bad).exists()
    r = cli("extract-radiomics", man, "--modalities", "t2", "--mask", "gland", "--params", "p.yaml",
            "-o", tmp_path / "r.xlsx")
    assert r.exit_code == 2 and "unknown table format .xlsx" in r.stderr, r
    # .csv.gz: gzip text a plain reader loads; the sidecar beside it; same table, same bytes
    for name in ("a.csv.gz", "b.csv.gz"):
        assert cli("merge", src, "-o", tmp_path / name).exit_code == 0
    assert (tmp_path / "a.csv.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    import pandas as pd

    assert list(pd.read_csv(tmp_path / "a.csv.gz").columns[:2]) == ["case_id", "split"]
    assert read_table(str(tmp_path / "a.csv.gz")).values.tobytes() == read_table(str(src)).values.tobytes()
    assert cli("merge", src, "-o", tmp_path / "t.tsv").exit_code == 0
    assert "\t" in (tmp_path / "t.tsv").read_text().splitlines()[0]
    assert read_table(str(tmp_path / "t.tsv")).values.shape == (6, 3)
    # an output of one kind named as another: refused (compare writes CSV)
    from radlens_cli.io.files import atomic_output
    from radlens_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"this output is text table \(\.csv\), but the name says HDF5"):
        with atomic_output(str(tmp_path / "delta.h5"), suffix=".csv"):
            pass
    assert not list(tmp_path.glob(".delta.h5*"))


def test_binary_output_to_a_terminal_is_refused(tmp_path):
    import pty

    from tests.conftest import make_table
    from radlens_cli.io.tables import write_table

    write_table(make_table(n=4, p=2), str(tmp_path / "t.h5"))
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "radlens_cli", "merge", str(tmp_path / "t.h5"), "-o", "-"],
                       stdout=slave, stderr=subprocess.PIPE, env=env, text=True,
                       encoding="utf-8", errors="replace")
    os.close(slave)
    os.close(master)
    assert r.returncode == 2 and "refusing to write HDF5 to a terminal" in r.stderr, r.stderr


def test_csv_provenance_sidecar_and_info_reads_every_kind(cli, tmp_path):
    import pandas as pd
    import torch

    from tests.conftest import make_table
    from radlens_cli.io.tables import write_table

    write_table(make_table(n=6, p=3), str(tmp_path / "t.h5"))
    r = cli("merge", tmp_path / "t.h5", "-o", tmp_path / "m.csv")
    assert r.exit_code == 0, r
    side = json.loads((tmp_path / "m.csv.json").read_text())
    assert side["radlens_schema"] == "case-table/1" and side["history"][-1]["subcommand"] == "merge"
    assert side["params"]["allow_incomplete"] is False and "numpy" in side["versions"]
    assert len(pd.read_csv(tmp_path / "m.csv")) == 6  # plain readers still load the CSV
    r = cli("info", tmp_path / "m.csv")
    assert r.exit_code == 0 and "m.csv: case-table/1 (CSV)" in r.stdout and "history:" in r.stdout, r
    assert "rows: 6" in r.stdout
    # any other CSV writer gets a sidecar through the io layer (here: --failures of a failed run)
    (tmp_path / "f.csv").write_text("case_id,a\nx,1\n")
    from radlens_cli.io.runs import write_failures

    write_failures(str(tmp_path / "fail.csv"), [{"case_id": "x", "modality": "t2"}], False)
    assert json.loads((tmp_path / "fail.csv.json").read_text())["radlens_schema"] == "csv-provenance/1"
    # an edited CSV: its stale sidecar is ignored, with a warning
    with open(tmp_path / "m.csv", "a") as fh:
        fh.write("")
    (tmp_path / "m.csv").write_text((tmp_path / "m.csv").read_text().replace("case", "kase", 1))
    r = cli("info", tmp_path / "m.csv")
    assert "does not match" in r.stderr and "case-table/1" not in r.stdout

    man = tmp_path / "cohort.csv"
    man.write_text("case_id,t2,gland\na,a.nii.gz,g.nii.gz\nb,b.nii.gz,h.nii.gz\n")
    r = cli("info", man)
    assert r.exit_code == 0 and "cohort manifest (CSV)" in r.stdout and "derived" in r.stdout, r

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    save_radlens_checkpoint(str(tmp_path / "e.pt"), build_encoder("atto", 2), "convnextv2_atto", 2,
                            {"spacing": [1, 1, 2]})
    r = cli("info", "--json", tmp_path / "e.pt")
    meta = json.loads(r.stdout)
    n = sum(p.numel() for p in build_encoder("atto", 2).state_dict().values())
    assert meta["schema"] == "radlens checkpoint/1" and meta["arch"] == "convnextv2_atto" and meta["in_chans"] == 2
    assert meta["parameters"] == n and meta["preprocessing"] == {"spacing": [1, 1, 2]}
    # weights-only: a pickle that would run code is refused, and the code does not run
    torch.save({"x": Boom()}, tmp_path / "evil.pt")
    r = cli("info", tmp_path / "evil.pt")
    assert r.exit_code == 1 and "refused" in r.stderr and not (tmp_path / "pwned").exists()

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w])
    onnx.save(helper.make_model(graph, producer_name="test"), str(tmp_path / "m.onnx"))
    meta = json.loads(cli("info", "--json", tmp_path / "m.onnx").stdout)
    assert meta["format"] == "ONNX" and meta["inputs"] == {"x": ["n", 4]} and meta["parameters"] == 12


class Boom:
    def __reduce__(self):
        return (open, ("/nonexistent-dir/pwned", "w"))


def test_unnamed_index_column_dropped_or_refused(cli, tmp_path):
    import pandas as pd

    df = pd.DataFrame({"case_id": ["a", "b", "c"], "f1": [1.0, 2.0, 3.5], "f2": [0.0, 1.0, 0.0]})
    df.to_csv(tmp_path / "idx.csv")  # pandas' default: the index as a leading unnamed column
    t = read_table(str(tmp_path / "idx.csv"))
    assert t.columns == ["f1", "f2"]
    r = cli("cka", tmp_path / "idx.csv", tmp_path / "idx.csv")
    assert "dropped a leading unnamed column 0..2 (a pandas index" in r.stderr, r
    df.index = [5, 6, 7]
    df.to_csv(tmp_path / "odd.csv")
    r = cli("cka", tmp_path / "odd.csv", tmp_path / "odd.csv")
    assert r.exit_code == 1 and "odd.csv: column 1 has no name ('Unnamed: 0')" in r.stderr, r


def test_environment_section_lists_every_variable_read():
    """Every os.environ key in the source is in the man pages' ENVIRONMENT section."""
    import re

    from radlens_cli.manpages import ENVIRONMENT, generate

    listed = {v.strip() for names, _, _ in ENVIRONMENT for v in names.split(",")}
    used = set()
    for root, _, files in os.walk(REPO / "radlens_cli"):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(root, f), encoding="utf-8").read()
                used |= set(re.findall(r"environ(?:\.get)?\(\s*\"([A-Z_]+)\"", text))
                used |= set(re.findall(r"environ\[\"([A-Z_]+)\"\]", text))
                if "environ" in text:  # names kept in constants or read through a mapping
                    used |= set(re.findall(r"\"((?:SLURM|RADLENS|TQDM)_[A-Z_]+)\"", text))
    assert used and used <= listed, used - listed
    assert "SLURM_ARRAY_TASK_STEP" in used and "RADLENS_TEST_KILL_WORKER" in used
    pages = generate()
    page = pages["radlens-embed.1"]
    assert ".SH ENVIRONMENT" in page and "SLURM_ARRAY_TASK_STEP" in page
    # each page lists what applies to its command (issue 25: SLURM for stats, --keep-going for compare)
    stats, compare = pages["radlens-stats.1"], pages["radlens-compare.1"]
    assert "SLURM" not in stats and "WORLD_SIZE" not in stats and "SOURCE_DATE_EPOCH" in stats
    assert "keep\\-going" not in compare.split(".SH EXIT STATUS")[1]
    assert "keep\\-going" in pages["radlens-extract-radiomics.1"].split(".SH EXIT STATUS")[1]
    assert "WORLD_SIZE" in pages["radlens-finetune.1"] and "WORLD_SIZE" not in page
    for name, text in pages.items():
        assert "143 terminated (SIGTERM" in text, name
        assert "{manifest}" not in text and "<list[str]>" not in text, name


def test_global_flags_after_the_subcommand_version_and_jobs_names(cli):
    from radlens_cli.commands.app import hoist_global_flags

    assert hoist_global_flags(["decode", "a", "-v", "--", "-q"]) == ["-v", "decode", "a", "--", "-q"]
    r = cli("info", "missing.h5", "--verbose")
    assert r.exit_code == 1 and "Traceback" in r.stderr, r
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("radlens ") and "  torch " in r.stdout
    assert "  pyradiomics-bhklab " in r.stdout and "  h5py " in r.stdout
    r = cli("finetune", "--help")
    assert "-j, --jobs" in r.stdout and "--workers" not in r.stdout  # the old name stays, hidden
