"""Issue 7: a phantom written the way a scanner writes it, through extract-radiomics, embed
and finetune.

`radlens synth --scanner`: T2 as a DICOM series folder at 0.5x0.5x3 mm; ADC and high-b DWI
as files on a coarser 2x2x3 mm grid with a smaller field of view; masks on the T2 grid.
Extraction runs both ways (mask onto each sequence's grid, and --reference-modality t2),
embed and finetune resample every sequence onto one grid around the mask.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import REPO

QUICK = str(REPO / "radlens_cli" / "radiomics" / "presets" / "quick.yaml")
SMALL = ["--crop", "32,32,16", "--spacing", "1,1,2", "--device", "cpu"]


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    from typer.testing import CliRunner

    from radlens_cli.main import app

    d = tmp_path_factory.mktemp("scanner phantom")
    r = CliRunner().invoke(app, ["synth", "-o", str(d / "cohort"), "--cases", "6", "--scanner",
                                 "--size", "40,40,8"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return d


def test_scanner_phantom_through_extract_embed_finetune(cli, scanner):
    import torch

    torch.set_num_threads(1)
    from radlens_cli.io.images import read_image
    from radlens_cli.io.tables import read_table

    d = scanner
    manifest = d / "cohort" / "cohort.csv"
    # the cohort looks like scanner output
    t2 = read_image(str(d / "cohort" / "case000" / "t2"))
    adc = read_image(str(d / "cohort" / "case000" / "adc.nii.gz"))
    assert os.path.isdir(d / "cohort" / "case000" / "t2") and len(os.listdir(d / "cohort" / "case000" / "t2")) > 1
    assert t2.GetSpacing() == pytest.approx((0.5, 0.5, 3.0))
    assert adc.GetSpacing()[0] > 3 * t2.GetSpacing()[0]
    fov = lambda im: np.array(im.GetSize()) * np.array(im.GetSpacing())  # noqa: E731
    assert (fov(adc)[:2] < fov(t2)[:2]).all()

    mods = ["--modalities", "t2,adc,dwi", "--mask", "gland"]
    # extract: the mask onto each sequence's own grid (default), then everything onto T2
    for out, extra, mode in (("own.h5", [], "mask-to-image"), ("ref.h5", ["--reference-modality", "t2"], "reference")):
        r = cli("extract-radiomics", manifest, *mods, "--params", QUICK, "-o", d / out, *extra)
        assert r.exit_code == 0, r
        tab = read_table(str(d / out))
        assert tab.n_cases == 6 and np.isfinite(tab.values).all()
        assert {c.split("/")[0] for c in tab.columns} == {"t2", "adc", "dwi"}
        resampling = json.loads(tab.attrs["params"])["extraction"]["resampling"]
        assert resampling["mode"] == mode  # the choice is recorded in provenance
    assert read_table(str(d / "ref.h5")).attrs["params"] != read_table(str(d / "own.h5")).attrs["params"]
    # embed and finetune resample every sequence onto one grid around the mask
    r = cli("init-encoder", "--arch", "atto", "--in-chans", "3", "-o", d / "enc.pt")
    assert r.exit_code == 0, r
    r = cli("embed", manifest, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder", d / "enc.pt",
            *SMALL, "-o", d / "emb.h5")
    assert r.exit_code == 0, r
    emb = read_table(str(d / "emb.h5"))
    assert emb.n_cases == 6 and np.isfinite(emb.values).all() and emb.values.std(axis=0).max() > 0
    r = cli("finetune", manifest, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder", d / "enc.pt",
            *SMALL, "--task", "classify", "--target", "risk", "--epochs", "1", "--warmup-epochs", "0",
            "--metrics", d / "metrics.csv", "-o", d / "ft.pt")
    assert r.exit_code == 0, r
    assert (d / "ft.pt").exists() and (d / "metrics.csv").exists()
    # the fine-tuned checkpoint embeds the scanner cohort too, without --arch
    r = cli("embed", manifest, "--modalities", "t2,dwi,adc", "--mask", "zones:1+2", "--encoder", d / "ft.pt",
            "--device", "cpu", "-o", d / "emb_ft.h5")
    assert r.exit_code == 0, r
    assert read_table(str(d / "emb_ft.h5")).n_cases == 6
