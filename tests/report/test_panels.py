"""`radlens report --manifest`: image panels (orientation, presence, size, contents)."""

import re

import numpy as np
import pytest
import SimpleITK as SITK  # a hard dependency (pyproject): the panels are never skipped

from tests.report.conftest import make_inputs
from tests.commands.test_report import parse


def _rot_z(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


# Voxel-axis directions (columns: physical LPS direction of i, j, k) as scanners and NIfTI
# converters write them: LPS identity, RAS-stored NIfTI, a coronal and a sagittal acquisition
# stored slice-last, an axial one with the rows first, and a 15° oblique axial.
DIRECTIONS = {
    "lps": np.eye(3),
    "ras": np.diag([-1.0, -1.0, 1.0]),
    "coronal": np.array([[1.0, 0, 0], [0, 0, -1], [0, -1, 0]]),
    "sagittal": np.array([[0, 0, 1.0], [1, 0, 0], [0, -1, 0]]),
    "swapped": np.array([[0, 1.0, 0], [1, 0, 0], [0, 0, -1]]),
    "oblique": _rot_z(15),
}


def _phantom(direction, spacing=(0.8, 0.6, 2.0), size=(41, 45, 31)):
    """A noisy volume whose ROI sits at the centre and with one bright voxel 8 mm to the
    patient's left and 8 mm anterior of it, in the ROI's plane (LPS: +x left, -y anterior)."""
    img = SITK.Image([int(s) for s in size], SITK.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    centre_idx = [(s - 1) / 2 for s in size]
    c = np.array(img.TransformContinuousIndexToPhysicalPoint(centre_idx))
    img.SetOrigin(tuple(-c))  # the centre voxel at the physical origin
    rng = np.random.default_rng(0)
    arr = rng.uniform(90, 110, size=size[::-1]).astype(np.float32)
    mask = np.zeros(size[::-1], np.uint8)
    idx = np.indices(size[::-1]).reshape(3, -1).T[:, ::-1]  # (i, j, k) of every voxel
    phys = (np.asarray(direction) @ (idx * np.asarray(spacing)).T).T + np.asarray(img.GetOrigin())
    near = np.linalg.norm(phys, axis=1) < 5.0
    mask.reshape(-1)[near] = 1
    marker = img.TransformPhysicalPointToIndex((8.0, -8.0, 0.0))
    arr[marker[2], marker[1], marker[0]] = 1000.0
    out = SITK.GetImageFromArray(arr)
    out.CopyInformation(img)
    m = SITK.GetImageFromArray(mask)
    m.CopyInformation(img)
    return out, m


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_left_anterior_marker_appears_top_right(tmp_path, name):
    from radlens_cli.io.manifest import MaskSpec
    from radlens_cli.report.images import CaseImages, PanelSpec, axial_axes

    img, mask = _phantom(DIRECTIONS[name])
    SITK.WriteImage(img, str(tmp_path / "t2.nii.gz"))
    SITK.WriteImage(mask, str(tmp_path / "roi.nii.gz"))
    (tmp_path / "cohort.csv").write_text("case_id,t2,roi,split\nc1,t2.nii.gz,roi.nii.gz,test\n")
    imgs = CaseImages(PanelSpec(str(tmp_path / "cohort.csv"), ["t2"], MaskSpec("roi"), 1))
    sl, ms, (rmm, cmm), (lo, hi), box = imgs.view("c1", "t2")
    r, c = np.unravel_index(np.argmax(sl), sl.shape)
    assert sl[r, c] == 1000.0
    h, w = sl.shape
    assert r < h / 2 and c > w / 2, (name, (r, c), sl.shape)          # anterior up, patient's left on the right
    rr, cc = np.nonzero(ms)
    assert abs(rr.mean() - (h - 1) / 2) <= 1 and abs(cc.mean() - (w - 1) / 2) <= 1  # the ROI in the middle
    # the marker is 8 mm from the ROI centre both ways, in physical millimetres of the display
    # (an oblique slice is shown in its own voxel frame, not resliced: only the distance holds)
    dx, dy = (c - cc.mean()) * cmm, (rr.mean() - r) * rmm
    assert np.hypot(dx, dy) == pytest.approx(8.0 * np.sqrt(2), abs=1.0)
    if name != "oblique":
        assert (dx, dy) == pytest.approx((8.0, 8.0), abs=1.0)
    # no reslicing: the pixels are the image's own voxels of one slice
    (ra, _), (ca, _), sa = axial_axes(DIRECTIONS[name])
    assert sorted((ra, ca, sa)) == [0, 1, 2]
    assert sl.shape == (img.GetSize()[ra], img.GetSize()[ca])
    assert (rmm, cmm) == pytest.approx((img.GetSpacing()[ra], img.GetSpacing()[ca]))
    assert 90 < lo < 92 and 109 < hi < 111  # the window: the body percentiles, not the lone bright voxel


def test_panels_present_with_manifest_and_small(cli, tmp_path):
    r = cli("synth", "-o", tmp_path / "ph", "--cases", "20", "--seed", "3", "--size", "40,40,10")
    assert r.exit_code == 0, r.stderr
    paths = make_inputs(tmp_path, n_cases=20, fmt="new", checkpoints=("ft-epoch001", "ft-epoch002"))
    out = tmp_path / "with.html"
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "--manifest", tmp_path / "ph" / "cohort.csv", "--modalities", "t2,dwi,adc", "--mask", "gland",
            "--panel-cases", "2", "-o", out)
    assert r.exit_code == 0, r.stderr
    html = out.read_text(encoding="utf-8")
    dom = parse(out)
    assert "panels" in dom.sections
    figs = re.findall(r'<figure id="(fig_panels_[a-z0-9_]+)"><img src="data:image/png;base64,([^"]+)"', html)
    names = [n for n, _ in figs]
    assert names == ["fig_panels_examples"] + [f"fig_panels_gains_{i}" for i in range(1, 6)] + \
        [f"fig_panels_losses_{i}" for i in range(1, 6)]
    total = sum(len(b) for _, b in figs)  # base64, as embedded
    assert total < 1_000_000, total
    # the low/high cases are the extremes of the feature over the test split, values printed
    import pandas as pd

    from radlens_cli.io.tables import read_table

    t = read_table(paths["radiomics"])
    delta = pd.read_csv(paths["compare"])
    delta = delta[delta["checkpoint"] == "ft-epoch002"]  # the panels describe the last checkpoint
    top = delta[delta["decodable"]].sort_values("rank_gain").iloc[0]
    test = t.split == "test"
    v = t.values[test, t.columns.index(top["column"])]
    ids = t.case_id[test]
    order = np.argsort(v, kind="stable")
    text = " ".join(dom.text)
    for i in (order[0], order[1], order[-2], order[-1]):
        assert f"{v[i]:.4g} ({ids[i]})" in html
    assert top["column"] in text
    # undecodable features never get panels
    bad = set(delta.loc[~delta["decodable"], "column"])
    shown = set(re.findall(r"(?:Gained|Lost) #\d: ([^ ]+) ", text))
    assert len(shown) == 10 and not shown & bad
    assert "checkpoints" in dom.sections and out.stat().st_size < 2_000_000
    # without the manifest there are no panels: test_report's exact section lists
    # an unknown modality column is named
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "--manifest", tmp_path / "ph" / "cohort.csv", "--modalities", "t2,flair", "--mask", "gland", "-o",
            tmp_path / "x.html")
    assert r.exit_code == 2 and "flair" in r.stderr
