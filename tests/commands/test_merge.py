"""`radlens merge`: parts of a sharded run back into one table (moved from the extract-radiomics
and scripts tests)."""

import json
import os

import numpy as np

from radlens_cli.io.tables import read_table
from tests.commands.test_extract_radiomics import attrs, run
from tests.commands import harness as h
from tests.encoders.conftest import write_cohort
from tests.radiomics.conftest import make_cohort, tiny_params  # noqa: F401 (fixture)


def test_sharding_and_merge_equal_full_run(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=5)
    r = run(cli, manifest, tmp_path / "full.h5", tiny_params)
    assert r.exit_code == 0, r
    parts = []
    for i in range(3):
        p = tmp_path / f"part{i}.h5"
        r = run(cli, manifest, p, tiny_params, "--part-id", str(i), "--num-parts", "3")
        assert r.exit_code == 0, r
        parts.append(p)
    sizes = [read_table(str(p)).n_cases for p in parts]
    assert sorted(sizes) == [1, 2, 2]
    r = cli("merge", *parts[::-1], "-o", tmp_path / "merged.h5")
    assert r.exit_code == 0, r
    full, merged = read_table(str(tmp_path / "full.h5")), read_table(str(tmp_path / "merged.h5"))
    assert list(merged.case_id) == sorted(full.case_id)
    order = [list(full.case_id).index(c) for c in merged.case_id]
    assert merged.values.tobytes() == full.values[order].tobytes()
    assert list(merged.split) == list(full.split[order]) and merged.columns == full.columns
    assert list(merged.column_meta["family"]) == list(full.column_meta["family"])

    # refusals: a missing part, duplicates, other parameters, other columns
    r = cli("merge", parts[0], parts[1], "-o", tmp_path / "x.h5")
    assert r.exit_code == 1 and "missing" in r.stderr and "--allow-incomplete" in r.stderr
    assert not (tmp_path / "x.h5").exists()
    r = cli("merge", parts[0], parts[1], "--allow-incomplete", "-o", tmp_path / "x.h5")
    assert r.exit_code == 0, r
    r = cli("merge", parts[0], tmp_path / "full.h5", "-o", tmp_path / "y.h5")
    assert r.exit_code == 1 and "duplicate case_id" in r.stderr
    other = tmp_path / "other.yaml"
    other.write_text(tiny_params.read_text().replace("binWidth: 5", "binWidth: 7"))
    run(cli, manifest, tmp_path / "o1.h5", other, "--part-id", "1", "--num-parts", "3")
    r = cli("merge", parts[0], tmp_path / "o1.h5", parts[2], "-o", tmp_path / "y.h5")
    assert r.exit_code == 1 and "other parameters" in r.stderr and "binWidth" in r.stderr
    run(cli, manifest, tmp_path / "t2only.h5", tiny_params, "--part-id", "1", "--num-parts", "3", mods="t2")
    r = cli("merge", parts[0], tmp_path / "t2only.h5", parts[2], "-o", tmp_path / "y.h5")
    assert r.exit_code == 1 and "y.h5" not in os.listdir(tmp_path)


def test_empty_part_exits_0_and_merges(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    assert run(cli, manifest, tmp_path / "full.h5", tiny_params, mods="t2").exit_code == 0
    for i in range(3):
        r = run(cli, manifest, tmp_path / f"p{i}.h5", tiny_params, "--parts", f"{i}/3", mods="t2")
        assert r.exit_code == 0, r
    assert "nothing to do" in r.stderr and read_table(str(tmp_path / "p2.h5")).n_cases == 0
    r = cli("fit-share", tmp_path / "p0.h5", tmp_path / "full.h5", "-o", tmp_path / "s.h5")
    assert r.exit_code == 1 and "p0.h5: is part 0 of 3 of a sharded run, not a whole cohort" in r.stderr
    r = cli("merge", tmp_path / "p2.h5", tmp_path / "p0.h5", tmp_path / "p1.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 0, r
    full, merged = read_table(str(tmp_path / "full.h5")), read_table(str(tmp_path / "m.h5"))
    assert merged.values.tobytes() == full.values.tobytes() and merged.columns == full.columns
    assert "radlens_part" not in attrs(tmp_path / "m.h5")
    params = json.loads(attrs(tmp_path / "m.h5")["params"])
    assert params["extraction"]["modalities"] == ["t2"] and params["parts"] == [2, 0, 1]
    subs = [h["subcommand"] for h in json.loads(attrs(tmp_path / "m.h5")["history"])]
    assert subs[0] == "extract-radiomics" and subs[-1] == "merge"
    # every part exactly once
    r = cli("merge", tmp_path / "p0.h5", tmp_path / "p1.h5", tmp_path / "p2.h5", tmp_path / "p2.h5",
            "-o", tmp_path / "x.h5")
    assert r.exit_code == 1 and "part 2 of 3 given twice" in r.stderr
    # a part read alone says so; an incomplete merge too
    r = cli("cka", tmp_path / "p0.h5", tmp_path / "p0.h5")
    assert "p0.h5: is part 0 of 3 of a sharded run" in r.stderr
    r = cli("merge", tmp_path / "p0.h5", "--allow-incomplete", "-o", tmp_path / "inc.h5")
    assert r.exit_code == 0 and "missing" in r.stderr
    r = cli("cka", tmp_path / "inc.h5", tmp_path / "inc.h5")
    assert "incomplete merge: part(s) 1, 2 of 3 missing" in r.stderr


def test_merge_refuses_another_manifest(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    for i in range(2):
        assert run(cli, manifest, tmp_path / f"p{i}.h5", tiny_params, "--parts", f"{i}/2",
                   mods="t2").exit_code == 0
    with open(manifest, "a") as fh:
        fh.write(open(manifest).read().splitlines()[1].replace("case00", "case09") + "\n")
    assert run(cli, manifest, tmp_path / "q1.h5", tiny_params, "--parts", "1/2", mods="t2").exit_code == 0
    r = cli("merge", tmp_path / "p0.h5", tmp_path / "q1.h5", "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "another manifest" in r.stderr and not (tmp_path / "m.h5").exists()


def test_merge_csv_parts_gets_column_metadata(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    for i in range(2):
        r = run(cli, manifest, tmp_path / f"p{i}.csv", tiny_params, "--part-id", str(i), "--num-parts", "2")
        assert r.exit_code == 0, r
    r = cli("merge", tmp_path / "p0.csv", tmp_path / "p1.csv", "-o", tmp_path / "m.h5")
    assert r.exit_code == 0, r
    t = read_table(str(tmp_path / "m.h5"))
    assert list(t.case_id) == ["case00", "case01"]
    assert t.column_meta["modality"][0] == "t2" and t.column_meta["family"][0] == "firstorder"


def test_merge_names_the_embedding_setting_that_differs(cli, tmp_path):
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    manifest = write_cohort(str(tmp_path / "c"), n=2)
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_radlens_checkpoint(str(tmp_path / f"e{seed}.pt"), build_encoder("atto", 3), "convnextv2_atto", 3, None)

    def part(name, i, enc="e0.pt", spacing="1,1,2", layer="final"):
        r = cli("embed", manifest, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder", tmp_path / enc,
                "--crop", "16,32,32", "--spacing", spacing, "--layer", layer, "--parts", f"{i}/2",
                "-o", tmp_path / name)
        assert r.exit_code == 0, r
        return tmp_path / name

    p0, p1 = part("p0.h5", 0), part("p1.h5", 1)
    for other, word in ((part("enc.h5", 1, enc="e1.pt"), "encoder_fingerprint"),
                        (part("sp.h5", 1, spacing="2,2,4"), "preprocessing.spacing: [1.0, 1.0, 2.0] vs [2.0, 2.0, 4.0]"),
                        (part("lay.h5", 1, layer="stage3"), "layer: \"final\" vs \"stage3\"")):
        r = cli("merge", p0, other, "-o", tmp_path / "m.h5")
        assert r.exit_code == 1 and "made with other parameters" in r.stderr and word in r.stderr, r
        assert not (tmp_path / "m.h5").exists()
    r = cli("merge", p0, p1, "-o", tmp_path / "m.h5")
    assert r.exit_code == 0, r
    params = json.loads(attrs(tmp_path / "m.h5")["params"])
    assert params["layer"] == "final" and params["preprocessing"]["spacing"] == [1.0, 1.0, 2.0]
    assert params["encoder_fingerprint"] and "part_id" not in params and params["merged_from"] == "embed"


# ---------------------------------------------------------------- the STYLE conventions (harness)

def part_tables(folder):
    """Two parts of a `--parts i/2` run written directly (no extraction): cases split 3 + 2."""
    from radlens_cli.io.tables import CaseTable, write_table

    rng = np.random.default_rng(0)
    ids = np.array([f"case{i:02d}" for i in range(5)], dtype=object)
    values = rng.normal(size=(5, 3))
    cols = ["t2/original_firstorder_Mean", "t2/original_glcm_Contrast", "adc/original_firstorder_Mean"]
    out = {}
    for i, rows in enumerate(([0, 2, 4], [1, 3])):
        attrs = {"radlens_part": json.dumps({"part_id": i, "num_parts": 2}),
                 "params": json.dumps({"binWidth": 25, "part_id": i, "num_parts": 2}),
                 "history": json.dumps([{"subcommand": "extract-radiomics"}])}
        path = folder / f"part{i}.h5"
        write_table(CaseTable(ids[rows], values[rows], cols, np.array(["train"] * len(rows), dtype=object)),
                    str(path), attrs=attrs)
        out[f"p{i}"] = path
    out["values"] = values
    return out


SPEC = h.Spec("merge", lambda folder: {k: v for k, v in part_tables(folder).items() if k != "values"},
              lambda i, out, seed: [i["p1"], i["p0"], "-o", out], read=h.read_h5, out_name="merged.h5",
              stdin_role="p1")


def test_default_run_sorts_cases_and_records_the_parts(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    (tmp_path / "again").mkdir()
    want = part_tables(tmp_path / "again")["values"]
    assert list(out.data["case_id"]) == [f"case{i:02d}" for i in range(5)]
    np.testing.assert_array_equal(out.data["values"], want)  # rows back in case_id order, values untouched
    assert out.params["parts"] == [1, 0] and out.params["merged_from"] == "extract-radiomics"
    assert out.params["binWidth"] == 25 and "part_id" not in out.params
    assert "radlens_part" not in out.attrs


def test_pipe_out_and_a_part_from_stdin(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_parts_same_values_and_parameters(cli, tmp_path):
    a, b, _ = h.determinism(cli, SPEC, tmp_path)
    assert a.params == b.params and a.params["allow_incomplete"] is False


def test_bad_inputs(cli, tmp_path):
    files = SPEC.inputs(tmp_path)
    h.bad_input(cli, SPEC, tmp_path, [files["p0"], "-o", tmp_path / "m.h5"], 1, "part(s) 1 of 2 missing")
    h.bad_input(cli, SPEC, tmp_path, [files["p0"], tmp_path / "nope.h5", "-o", tmp_path / "m.h5"], 1, "nope.h5")
    h.bad_input(cli, SPEC, tmp_path, ["-", "-", "-o", tmp_path / "m.h5"], 2, "stdin")
    h.bad_input(cli, SPEC, tmp_path, [files["p0"], files["p1"], "-o", tmp_path / "m.txt"], 2, "m.txt")


def test_merge_keeps_every_part_s_case_inputs(cli, tmp_path):
    """What each case was read from (DICOM UIDs, segments, geometry warnings: `case_inputs`)
    travels with extract-radiomics parts as an attribute and with embed parts in params;
    the merged table keeps every part's, and parts whose cases differ still merge."""
    import h5py

    from radlens_cli.io.tables import CaseTable, write_table

    ids = np.array([f"case{i:02d}" for i in range(4)], dtype=object)
    values = np.arange(8.0).reshape(4, 2)
    for kind in ("extract-radiomics", "embed"):
        paths = []
        for i, rows in enumerate(([0, 2], [1, 3])):
            inputs = {str(ids[r]): {"t2": f"uid-{r}"} for r in rows}
            params = {"binWidth": 25, "part_id": i, "num_parts": 2}
            attrs = {"radlens_part": json.dumps({"part_id": i, "num_parts": 2}),
                     "history": json.dumps([{"subcommand": kind}])}
            if kind == "embed":
                params["case_inputs"] = inputs
            else:
                attrs["case_inputs"] = json.dumps(inputs)
            attrs["params"] = json.dumps(params)
            paths.append(tmp_path / f"{kind}{i}.h5")
            write_table(CaseTable(ids[rows], values[rows], ["a", "b"], np.array(["train"] * 2, dtype=object)),
                        str(paths[-1]), attrs=attrs)
        out = tmp_path / f"{kind}.h5"
        r = cli("merge", *paths, "-o", out)
        assert r.exit_code == 0, r.stderr
        with h5py.File(out) as f:
            params = json.loads(f.attrs["params"])
            got = params["case_inputs"] if kind == "embed" else json.loads(f.attrs["case_inputs"])
        assert got == {f"case{r:02d}": {"t2": f"uid-{r}"} for r in range(4)}
