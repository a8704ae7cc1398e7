"""`radlens saliency` through the CLI: the STYLE conventions (tests/commands/harness.py), maps on
each case's own grid, parts and merge, failures, bad inputs."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.commands import harness as h
from tests.encoders.conftest import SMALL, write_cohort

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]
FAST = ["--methods", "gradcam,occlusion", *SMALL]


def inputs(folder):
    return {"manifest": write_cohort(str(folder / "cohort"), n=2)}


def read(path) -> h.Output:
    df = pd.read_csv(path, keep_default_na=False)
    data = {c: df[c].to_numpy() for c in df.columns}
    side = f"{path}.json"
    params = json.load(open(side))["params"] if os.path.exists(side) else None
    return h.Output(data, params)


SPEC = h.Spec("saliency", inputs,
              lambda i, out, seed: [i["manifest"], *MODS, "--encoder", "tests.saliency.models:tiny_classifier",
                                    "-o", out, *FAST, "--layer", "conv2"] + ([] if seed is None else
                                                                              ["--seed", seed]),
              read=read, out_name="sal.csv", seeded=True, seed_path=("seed",))


def test_default_run_and_pipe(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path / "a")
    assert list(out.data["case_id"]) == ["p00", "p00", "p01", "p01"]
    assert list(out.data["method"]) == ["gradcam", "occlusion"] * 2
    assert out.params["layer"] == "conv2" and out.params["methods"] == ["gradcam", "occlusion"]
    for c in ("mass_in_mask", "iou10_occlusion"):
        v = np.asarray([x for x in out.data[c] if x != ""], dtype=float)
        assert ((v >= 0) & (v <= 1)).all()
    h.pipe_out(cli, SPEC, tmp_path / "b")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_determinism(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)


def test_maps_on_the_case_grid_and_maximum_in_the_mask(cli, tmp_path):
    """Maps have the first modality's origin, spacing, direction and size; for a model that
    reads the bright gland, the map's maximum lies inside the gland mask."""
    import SimpleITK as sitk

    man = write_cohort(str(tmp_path / "c"), n=2, direction=(0, 1, 0, 1, 0, 0, 0, 0, 1))
    r = cli("saliency", man, *MODS, "--encoder", "tests.saliency.models:bright", "--methods",
            "gradcam,occlusion", *SMALL, "--layer", "conv", "--maps", tmp_path / "maps", "-o", tmp_path / "s.csv")
    assert r.exit_code == 0, r
    df = pd.read_csv(man)
    for _, row in df.iterrows():
        t2 = sitk.ReadImage(os.path.join(os.path.dirname(man), row["t2"]))
        gland = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(os.path.dirname(man), row["gland"])))
        for m in ("gradcam", "occlusion"):
            img = sitk.ReadImage(str(tmp_path / "maps" / row["case_id"] / f"{m}.nii.gz"))
            assert img.GetSize() == t2.GetSize()
            assert np.allclose(img.GetOrigin(), t2.GetOrigin(), atol=1e-4)
            assert np.allclose(img.GetSpacing(), t2.GetSpacing(), atol=1e-6)
            assert np.allclose(img.GetDirection(), t2.GetDirection(), atol=1e-6)
            arr = sitk.GetArrayFromImage(img)
            assert arr.max() > 0
            assert gland.ravel()[int(np.argmax(arr))] > 0, (row["case_id"], m)
    table = pd.read_csv(tmp_path / "s.csv")
    # the gland is 5 % of the box: both maps put many times that inside it
    # (occlusion's 4x4x4 blocks straddle the outline, so less than Grad-CAM)
    assert (table.loc[table["method"] == "gradcam", "mass_in_mask"] > 0.6).all()
    assert (table.loc[table["method"] == "occlusion", "mass_in_mask"] > 0.3).all()
    # a rerun into the same folder needs --force
    r = cli("saliency", man, *MODS, "--encoder", "tests.saliency.models:bright", "--methods", "occlusion",
            *SMALL, "--maps", tmp_path / "maps", "-o", tmp_path / "s2.csv")
    h.one_line_error(r, "saliency", 2, "--force")


def test_parts_merge_and_keep_going(cli, tmp_path):
    man = write_cohort(str(tmp_path / "c"), n=3)
    args = [man, *MODS, "--encoder", "tests.saliency.models:tiny_regressor", "--methods", "gradcam",
            "--layer", "conv2", *SMALL]
    assert cli("saliency", *args, "-o", tmp_path / "all.csv").exit_code == 0
    for k in range(2):
        r = cli("saliency", *args, "--parts", f"{k}/2", "-o", tmp_path / f"p{k}.csv")
        assert r.exit_code == 0, r
    r = cli("merge", tmp_path / "p0.csv", tmp_path / "p1.csv", "-o", tmp_path / "merged.csv")
    assert r.exit_code == 0, r
    a, b = pd.read_csv(tmp_path / "all.csv"), pd.read_csv(tmp_path / "merged.csv")
    pd.testing.assert_frame_equal(a, b)
    r = cli("merge", tmp_path / "p0.csv", "-o", tmp_path / "half.csv")
    h.one_line_error(r, "merge", 1, "part(s) 1")
    os.remove(tmp_path / "c" / "p01_adc.nii.gz")
    r = cli("saliency", *args, "-o", tmp_path / "fail.csv")
    assert r.exit_code == 1 and not (tmp_path / "fail.csv").exists()
    r = cli("saliency", *args, "--keep-going", "-o", tmp_path / "kept.csv")
    assert r.exit_code == 0, r
    assert sorted(pd.read_csv(tmp_path / "kept.csv")["case_id"]) == ["p00", "p02"]
    assert json.load(open(tmp_path / "kept.csv.json"))["failures"][0]["case_id"] == "p01"


def test_onnx_occlusion_only(cli, tmp_path):
    import torch

    from tests.saliency.models import tiny_classifier

    man = write_cohort(str(tmp_path / "c"), n=1)
    onnx = tmp_path / "m.onnx"
    torch.onnx.export(tiny_classifier(), torch.zeros(1, 3, 16, 32, 32), str(onnx), input_names=["x"],
                      dynamic_axes={"x": {0: "b"}}, dynamo=False)
    r = cli("saliency", man, *MODS, "--encoder", onnx, *SMALL, "--methods", "occlusion", "-o", tmp_path / "o.csv")
    assert r.exit_code == 0, r
    r2 = cli("saliency", man, *MODS, "--encoder", "tests.saliency.models:tiny_classifier", *SMALL,
             "--methods", "occlusion", "-o", tmp_path / "t.csv")
    a, b = pd.read_csv(tmp_path / "o.csv"), pd.read_csv(tmp_path / "t.csv")
    assert np.allclose(a["mass_in_mask"], b["mass_in_mask"], atol=1e-4)
    r = cli("saliency", man, *MODS, "--encoder", onnx, *SMALL, "--methods", "scorecam", "-o", tmp_path / "x.csv")
    h.one_line_error(r, "saliency", 2, "scorecam", "ONNX")


@pytest.mark.parametrize("args,code,needles", [
    (["--methods", "lime"], 2, ["--methods", "lime"]),
    (["--layer", "nope"], 2, ["--layer", "nope"]),
    (["--output-index", "7"], 2, ["--output-index", "7"]),
    (["--feature", "x"], 2, ["--decoder"]),
    (["-o", "{folder}/table.h5"], 2, ["table.h5", ".csv"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = inputs(tmp_path)
    args = [a.format(folder=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "out.csv"]
    h.bad_input(cli, SPEC, tmp_path, [files["manifest"], *MODS, "--encoder", "tests.saliency.models:tiny_classifier",
                                      *SMALL, *out, *args], code, *needles)


def test_failures_naming_the_output_is_refused_naming_both_flags(cli, tmp_path):
    """The one check of --failures against -o, before any input is read (it said ----failures)."""
    out = tmp_path / "s.csv"
    r = cli("saliency", tmp_path / "m.csv", "--modalities", "t2", "--mask", "gland", "--encoder", tmp_path / "x.pt",
            "-o", out, "--failures", out)
    assert r.exit_code == 2
    assert r.stderr.strip() == "radlens saliency: error: --failures and --output name the same file (or both stdout)"


def test_concept_maps_through_the_default_lens(cli, tmp_path):
    """embed -> fit-share -> decode (the symmetric lens, the default) -> saliency --decoder: the
    table's decoded value of each case is the lens's own numpy prediction (mean over the
    re-splits) from that case's row of the embeddings table, decoder_r2 the mean clipped
    re-split R2, and the concept maps land on each case's grid."""
    from radlens_cli.io.formats.decoder import load_decoder
    from radlens_cli.io.formats.share import load_share
    from radlens_cli.io.tables import CaseTable, read_table, write_table
    from radlens_cli.lens.share import ShareModel
    from radlens_cli.saliency.concept import symmetric_readout

    man = write_cohort(str(tmp_path / "cohort"), n=24)
    enc = ["--encoder", "tests.saliency.models:tiny_classifier", "--layer", "conv2", *SMALL]
    r = cli("embed", man, *MODS, *enc, "-o", tmp_path / "emb.h5")
    assert r.exit_code == 0, r.stderr
    emb = read_table(str(tmp_path / "emb.h5"))
    rng = np.random.default_rng(0)
    X = emb.values
    rad = CaseTable(emb.case_id, np.stack([X[:, 0] + 0.1 * X[:, 1], X[:, 2] - X[:, 3], rng.normal(size=len(X))], 1),
                    ["t2/original_firstorder_A", "t2/original_firstorder_B", "t2/original_firstorder_noise"],
                    split=emb.split)
    write_table(rad, str(tmp_path / "rad.h5"))
    r = cli("fit-share", tmp_path / "emb.h5", tmp_path / "rad.h5", "--epochs", "20", "--resplits", "3",
            "-o", tmp_path / "share.h5")
    assert r.exit_code == 0, r.stderr
    r = cli("decode", tmp_path / "share.h5", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "dec.h5")
    assert r.exit_code == 0, r.stderr
    col = "t2/original_firstorder_A"
    r = cli("saliency", man, *MODS, *enc, "--methods", "none", "--decoder", tmp_path / "dec.h5", "--share",
            tmp_path / "share.h5", "--embeddings", tmp_path / "emb.h5", "--feature", col,
            "--concept-method", "gradient", "--deletion", "--maps", tmp_path / "maps", "-o", tmp_path / "c.csv")
    assert r.exit_code == 0, r.stderr
    out = read(tmp_path / "c.csv")
    assert set(out.data["method"]) == {f"concept_{col}"} and len(out.data["case_id"]) == 24
    assert out.params["concept"]["lens"] == "symmetric"
    dec = load_decoder(str(tmp_path / "dec.h5"))
    k = dec.columns.index(col)
    assert np.allclose(out.data["decoder_r2"].astype(float), np.clip(dec.resplit["r2"][:, k], 0, None).mean())
    ro = symmetric_readout(ShareModel.from_record(load_share(str(tmp_path / "share.h5"))), dec, [col], [k])
    want = ro.lens.predict(X).mean(axis=0)[:, 0]
    rows = {c: i for i, c in enumerate(emb.case_id)}
    got = out.data["output"].astype(float)
    want = np.array([want[rows[c]] for c in out.data["case_id"]])
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max()), (got, want)
    assert os.path.exists(tmp_path / "maps" / "p00" / f"concept_{col.replace('/', '_')}.nii.gz")
    assert np.isfinite(out.data["deletion_auc"].astype(float)).all()
