"""DICOM-SEG and RTSTRUCT masks (issue 14), built in the test from phantom data: highdicom
writes the SEG, pydicom the RTSTRUCT, both referencing a T2 series written as a scanner does.

The label maps they come from are the independent reference: a SEG placed back on its series
must give the label map's voxels (so the same features, exactly), and the RTSTRUCT written with
contours half-way between voxel centres must rasterise back to them under radlens' convention.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from radlens_cli.errors import RadlensError
from radlens_cli.io.dicom_masks import DicomMask, rtstruct_mask
from radlens_cli.io.images import EmptyMaskError, lattice_offset_mm, load_mask, read_image, series_uid
from radlens_cli.io.manifest import parse_mask_spec
from radlens_cli.synth import phantom

SEED = 3
GRID = phantom.Grid((32, 32, 8), (0.5, 0.5, 3.0))
QUICK = "imageType:\n  Original: {}\nfeatureClass:\n  firstorder: []\n  shape: []\nsetting:\n  binWidth: 25\n"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("dicom masks")
    rows = []
    for i, cid in enumerate(["p0", "p1"]):
        case = phantom.generate_case(i, SEED, GRID, scanner=True)
        cd = d / cid
        cd.mkdir()
        phantom.write_dicom_series(case["t2"], GRID, str(cd / "t2"), cid, SEED)
        phantom.write_nifti(case["t2"], GRID, str(cd / "t2.nii.gz"))
        phantom.write_nifti(case["adc"], case["dwi_grid"], str(cd / "adc.nii.gz"))
        for m in ("gland", "zones"):
            phantom.write_nifti(case[m], GRID, str(cd / f"{m}.nii.gz"))
        segs = phantom.segment_masks(case)
        segs["Lesion"] = np.zeros_like(segs["Lesion"])  # a segment without a single frame
        phantom.write_seg(segs, str(cd / "t2"), str(cd / "seg.dcm"), cid, SEED)
        phantom.write_rtstruct(segs, str(cd / "t2"), str(cd / "rt.dcm"), cid, SEED)
        rows.append({"case_id": cid, "t2": f"{cid}/t2", "t2nii": f"{cid}/t2.nii.gz", "adc": f"{cid}/adc.nii.gz",
                     "gland": f"{cid}/gland.nii.gz", "zones": f"{cid}/zones.nii.gz", "seg": f"{cid}/seg.dcm",
                     "rt": f"{cid}/rt.dcm", "split": "train"})
    pd.DataFrame(rows).to_csv(d / "cohort.csv", index=False)
    (d / "quick.yaml").write_text(QUICK)
    return d


def _arr(img):
    return sitk.GetArrayFromImage(img)


def _load(cohort, cid, spec, images=("t2",), **kw):
    cols = {"t2": "t2", "t2nii": "t2.nii.gz", "adc": "adc.nii.gz"}
    col = parse_mask_spec(spec).column
    path = str(cohort / cid / {"seg": "seg.dcm", "rt": "rt.dcm"}.get(col, f"{col}.nii.gz"))
    return load_mask(path, parse_mask_spec(spec), images=[(m, str(cohort / cid / cols[m])) for m in images], **kw)


def _extract(cli, cohort, out, mask, *extra, modalities="t2"):
    return cli("extract-radiomics", cohort / "cohort.csv", "--modalities", modalities, "--mask", mask,
               "--params", cohort / "quick.yaml", "-o", out, *extra)


def test_seg_and_rtstruct_features_equal_the_label_maps(cli, cohort, tmp_path):
    from radlens_cli.io.tables import read_table

    tables = {}
    for name, mask in [("gland", "gland"), ("seg", "seg:prostate"), ("segnum", "seg:#1"), ("rt", "rt:PROSTATE"),
                       ("pz", "zones:1"), ("segpz", "seg:PZ"), ("rtpz", "rt:pz")]:
        r = _extract(cli, cohort, tmp_path / f"{name}.h5", mask)
        assert r.exit_code == 0, r.stderr
        tables[name] = read_table(str(tmp_path / f"{name}.h5"))
    ref = tables["gland"]
    assert ref.values.shape[0] == 2 and "t2/original_firstorder_Mean" in ref.columns
    for name in ("seg", "segnum"):  # a SEG on its own series: the same voxels, the same features
        np.testing.assert_array_equal(tables[name].values, ref.values)
    np.testing.assert_array_equal(tables["segpz"].values, tables["pz"].values)
    for rt, lab in (("rt", ref), ("rtpz", tables["pz"])):  # PZ is a ring on some slices: a hole contour
        for feat in ("t2/original_firstorder_Mean", "t2/original_firstorder_Median"):
            j = lab.columns.index(feat)
            np.testing.assert_allclose(tables[rt].values[:, j], lab.values[:, j], rtol=0.01)

    # provenance: the series read, the SEG's SOPInstanceUID and the segments used
    rec = json.loads(tables["seg"].attrs["case_inputs"])
    seg0 = pydicom.dcmread(str(cohort / "p0" / "seg.dcm"), stop_before_pixels=True)
    t2uid = pydicom.dcmread(str(cohort / "p0" / "t2" / "IM0001.dcm"), stop_before_pixels=True).SeriesInstanceUID
    assert rec["p0"]["mask"]["sop_instance_uid"] == seg0.SOPInstanceUID
    assert rec["p0"]["mask"]["segments"] == ["Prostate"] and rec["p0"]["mask"]["kind"] == "SEG"
    assert rec["p0"]["series"] == {"t2": t2uid} and rec["p0"]["mask"]["placed_on"] == "t2"
    assert "geometry" not in rec["p0"]
    rt = json.loads(tables["rtpz"].attrs["case_inputs"])["p1"]["mask"]
    assert rt["kind"] == "RTSTRUCT" and rt["segments"] == ["PZ"]
    # a label map: only the DICOM image series are recorded
    assert json.loads(tables["gland"].attrs["case_inputs"])["p0"] == {"series": {"t2": t2uid}}


def test_selectors(cohort, tmp_path):
    gland = _arr(read_image(str(cohort / "p0" / "gland.nii.gz"), pixel_float=False))
    zones = _arr(read_image(str(cohort / "p0" / "zones.nii.gz"), pixel_float=False))
    union, _ = _load(cohort, "p0", "seg:pz+TZ")
    np.testing.assert_array_equal(_arr(union), gland)
    by_number, _ = _load(cohort, "p0", "seg:#2+3")
    np.testing.assert_array_equal(_arr(by_number), gland)
    rt, info = _load(cohort, "p0", "rt:#3")  # RTSTRUCT: ROI number 3 is TZ
    np.testing.assert_array_equal(_arr(rt), zones == 2)
    assert info["mask"]["segments"] == ["TZ"]
    for spec in ("seg", "rt"):
        with pytest.raises(RadlensError, match=r"holds 4 segments \(#1 'Prostate', #2 'PZ', #3 'TZ', #4 'Lesion'\)"):
            _load(cohort, "p0", spec)
    with pytest.raises(RadlensError, match=r"no segment named 'urethra' \(segments: #1 'Prostate'"):
        _load(cohort, "p0", "seg:urethra")
    with pytest.raises(RadlensError, match=r"no segment number 9"):
        _load(cohort, "p0", "rt:#9")
    with pytest.raises(RadlensError, match="label map.*by number"):
        _load(cohort, "p0", "zones:PZ")

    # a SEG with one segment needs no selector; a folder holding exactly one object works
    folder = tmp_path / "one seg"
    folder.mkdir()
    case = phantom.generate_case(0, SEED, GRID, scanner=True)
    phantom.write_seg({"Gland": case["gland"] > 0}, str(cohort / "p0" / "t2"), str(folder / "x.dcm"), "p0", SEED)
    (folder / "notes.txt").write_text("not DICOM")
    only = load_mask(str(folder), parse_mask_spec("m"), images=[("t2", str(cohort / "p0" / "t2"))])[0]
    np.testing.assert_array_equal(_arr(only), gland)
    shutil.copy(cohort / "p0" / "rt.dcm", folder / "y.dcm")
    with pytest.raises(RadlensError, match="holds 2 SEG/RTSTRUCT objects"):
        load_mask(str(folder), parse_mask_spec("m"), images=[("t2", str(cohort / "p0" / "t2"))])


def test_absent_segment(cli, cohort, tmp_path):
    for spec in ("seg:lesion", "rt:Lesion"):  # SEG: no frame at all; RTSTRUCT: an ROI without contours
        with pytest.raises(EmptyMaskError, match="segment.s. Lesion of (SEG|RTSTRUCT) .* hold no voxel"):
            _load(cohort, "p0", spec)
        empty, _ = _load(cohort, "p0", spec, allow_empty=True)  # a segmentation target may be empty
        assert empty.GetSize() == GRID.size and not _arr(empty).any()
    r = _extract(cli, cohort, tmp_path / "o.h5", "seg:Lesion")
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    assert len(lines) == 2 and all("Lesion of the SEG hold no voxel" in ln for ln in lines), r.stderr


def test_wrong_reference_names_both_series(cohort):
    p0 = pydicom.dcmread(str(cohort / "p0" / "t2" / "IM0001.dcm"), stop_before_pixels=True).SeriesInstanceUID
    p1 = series_uid(str(cohort / "p1" / "t2"))
    for name in ("seg.dcm", "rt.dcm"):
        with pytest.raises(RadlensError) as e:
            load_mask(str(cohort / "p0" / name), parse_mask_spec("m:prostate"),
                      images=[("t2", str(cohort / "p1" / "t2"))])
        msg = str(e.value)
        assert p0 in msg and p1 in msg and "\n" not in msg, msg


def test_images_not_dicom(cohort):
    """NIfTI images: the SEG keeps its own frame geometry, the RTSTRUCT goes on the first modality's grid."""
    from radlens_cli.io.images import resample_like

    gland = read_image(str(cohort / "p1" / "gland.nii.gz"), pixel_float=False)
    seg, info = _load(cohort, "p1", "seg:Prostate", images=("t2nii", "adc"))
    assert "own frame geometry" in info["notes"][0] and info["mask"]["placed_on"] == "SEG frame geometry"
    assert seg.GetSize() != gland.GetSize()  # only the slices with frames
    np.testing.assert_array_equal(_arr(resample_like(seg, gland, "nearest")), _arr(gland))
    assert "warning" not in info  # a sub-volume of the T2 lattice
    rt, info = _load(cohort, "p1", "rt:Prostate", images=("t2nii", "adc"))
    assert "rasterised on the t2nii grid" in info["notes"][0]
    np.testing.assert_array_equal(_arr(rt), _arr(gland))


def test_rtstruct_convention_holes_and_edges():
    """Even-odd rule, centres on a contour (outer or hole) inside, either orientation;
    checked against the rectangle arithmetic of the same shapes."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    grid = sitk.Image([12, 10, 3], sitk.sitkUInt8)
    grid.SetSpacing([0.5, 0.5, 2.0])
    grid.SetOrigin([-10.0, 5.0, 30.0])

    def square(x0, y0, x1, y1, z, cw=False):  # index coordinates -> physical contour
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        pts = pts[::-1] if cw else pts
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.ContourData = [v for i, j in pts for v in grid.TransformContinuousIndexToPhysicalPoint((i, j, z))]
        return c

    roi = Dataset()
    roi.ReferencedROINumber = 1
    # slice 1: outer square through voxel centres 1..9 (edges count), a hole 3.5..6.5 drawn the
    # other way round, an island 4.5..5.5 inside the hole; a contour off every slice is dropped
    roi.ContourSequence = Sequence([square(1, 1, 9, 8, 1), square(3.5, 3.5, 6.5, 6.5, 1, cw=True),
                                    square(4.5, 4.5, 5.5, 5.5, 1), square(0, 0, 2, 2, 7),
                                    # slice 2: a hole traced through the centres of the voxels around it
                                    square(1, 1, 9, 8, 2, cw=True), square(3, 3, 7, 6, 2)])
    ds = Dataset()
    ds.ROIContourSequence = Sequence([roi])
    mask, stats = rtstruct_mask(DicomMask("RTSTRUCT", "x.dcm", "1", "2", (), {1: "A"}, ds), [1], grid)
    assert stats == {"contours": 5, "dropped": 1}
    jj, ii = np.mgrid[0:10, 0:12]
    outer = (ii >= 1) & (ii <= 9) & (jj >= 1) & (jj <= 8)
    hole = (ii >= 4) & (ii <= 6) & (jj >= 4) & (jj <= 6)
    island = (ii == 5) & (jj == 5)
    want = np.zeros((3, 10, 12), bool)
    want[1] = outer & ~hole | island
    want[2] = outer & ~((ii >= 4) & (ii <= 6) & (jj >= 4) & (jj <= 5))
    np.testing.assert_array_equal(_arr(mask).astype(bool), want)
    assert mask.GetOrigin() == grid.GetOrigin()


def test_mask_on_no_grid_warns_and_strict_fails(cli, cohort, tmp_path):
    # p0's gland moved 0.3 mm off the T2 lattice (as another patient's mask or a bad export would be)
    gland = read_image(str(cohort / "p0" / "gland.nii.gz"), pixel_float=False)
    moved = sitk.Image(gland)
    moved.SetOrigin(np.add(gland.GetOrigin(), (0.3, 0.0, 0.4)).tolist())
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    # a crop of the T2 lattice (a sub-grid) is normal and must not warn
    crop = sitk.RegionOfInterest(gland, [20, 20, 5], [6, 6, 2])
    sitk.WriteImage(crop, str(tmp_path / "crop.nii.gz"))
    man = pd.read_csv(cohort / "cohort.csv")
    for col in ("t2", "adc", "gland"):
        man[col] = [str(cohort / p) for p in man[col]]
    man["moved"] = [str(tmp_path / "moved.nii.gz"), man.loc[1, "gland"]]
    man["crop"] = [str(tmp_path / "crop.nii.gz"), man.loc[1, "gland"]]
    man.to_csv(tmp_path / "m.csv", index=False)

    def run(mask, *extra):
        return cli("extract-radiomics", tmp_path / "m.csv", "--modalities", "t2,adc", "--mask", mask,
                   "--params", cohort / "quick.yaml", "-o", tmp_path / f"{mask}.h5", "-f", *extra)

    r = run("moved")
    assert r.exit_code == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    expect = float(np.hypot(0.3 - 0.5, 0.4))  # nearest T2 voxel centre: one column over, same slice
    assert len(warns) == 1 and "case p0" in warns[0] and "moved.nii.gz" in warns[0], r.stderr
    assert f"{expect:.3g} mm" in warns[0] and "(t2)" in warns[0], warns[0]
    from radlens_cli.io.tables import read_table

    rec = json.loads(read_table(str(tmp_path / "moved.h5")).attrs["case_inputs"])
    assert rec["p0"]["geometry"] == {"offset_mm": round(expect, 4), "nearest": "t2"}
    assert "geometry" not in rec["p1"] and "warning" not in rec["p1"]

    r = run("moved", "--strict-geometry")
    assert r.exit_code == 1
    failed = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    assert len(failed) == 2 and all("case p0" in ln and "strict geometry" in ln for ln in failed), r.stderr

    for mask in ("crop", "gland"):  # a sub-grid of T2; a T2-grid mask used on ADC too
        r = run(mask, "--strict-geometry")
        assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr
    # ADC alone: the T2 column of the manifest still counts as the case's grid
    r = cli("extract-radiomics", tmp_path / "m.csv", "--modalities", "adc", "--mask", "gland", "--params",
            cohort / "quick.yaml", "-o", tmp_path / "adc.h5", "--strict-geometry")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


def test_lattice_offset_closed_form():
    d = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotated 90 degrees about z
    origin, spacing = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.8, 3.0])
    on = origin + d @ (spacing * [7, -2, 40])  # a voxel centre far outside the field of view
    assert lattice_offset_mm(on, origin, spacing, d) == pytest.approx(0.0, abs=1e-9)
    off = on + d @ [0.1, 0.3, -1.2]  # under half a voxel along each axis
    assert lattice_offset_mm(off, origin, spacing, d) == pytest.approx(np.sqrt(0.01 + 0.09 + 1.44))


def test_segmentation_target_and_dataset_record(cohort, tmp_path):
    """finetune's segmentation target and embed's provenance go through the same loader."""
    from radlens_cli.encoders.preprocess import CaseDataset, PreprocessConfig, collate_cases, preprocess_case
    from radlens_cli.io.manifest import read_manifest

    cfg = PreprocessConfig(["t2", "adc"], parse_mask_spec("seg:Prostate"), spacing=(1, 1, 3), crop=(4, 16, 16))
    imgs = [str(cohort / "p0" / "t2"), str(cohort / "p0" / "adc.nii.gz")]
    a = preprocess_case(imgs, str(cohort / "p0" / "seg.dcm"), cfg, str(cohort / "p0" / "rt.dcm"),
                        parse_mask_spec("rt:PZ"), case_id="p0")
    lab_cfg = PreprocessConfig(["t2", "adc"], parse_mask_spec("gland"), spacing=(1, 1, 3), crop=(4, 16, 16))
    b = preprocess_case(imgs, str(cohort / "p0" / "gland.nii.gz"), lab_cfg, str(cohort / "p0" / "zones.nii.gz"),
                        parse_mask_spec("zones:1"), case_id="p0")
    np.testing.assert_array_equal(a["volume"], b["volume"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_array_equal(a["seg_target"], b["seg_target"])
    assert a["seg_target"].any()
    rec = json.loads(a["inputs"])
    assert rec["mask"]["segments"] == ["Prostate"] and rec["segmentation_mask"]["segments"] == ["PZ"]
    assert rec["segmentation_mask"]["kind"] == "RTSTRUCT" and "mask" not in json.loads(b["inputs"])

    ds = CaseDataset(read_manifest(str(cohort / "cohort.csv")), cfg, failures_as_records=True,
                     cache_dir=str(tmp_path / "cache"))
    batch = collate_cases([ds[0], ds[1]])
    assert sorted(batch["inputs"]) == ["p0", "p1"] and batch["inputs"]["p1"]["series"]["t2"] == series_uid(
        str(cohort / "p1" / "t2"))
    assert ds.case_inputs() == batch["inputs"]  # kept with the cached volumes (finetune, cached embed batches)


def test_synth_scanner_writes_seg_and_rtstruct(tmp_path):
    summary = []
    for k in range(2):
        out = tmp_path / f"s{k}"
        out.mkdir()
        phantom.write_cohort(str(out), 1, 5, (24, 24, 6), (0.5, 0.5, 3.0), scanner=True)
        summary.append(out)
    man = pd.read_csv(summary[0] / "cohort.csv")
    assert list(man.columns[-2:]) == ["seg", "rtstruct"]
    for name in ("seg.dcm", "rtstruct.dcm"):  # the same seed gives the same bytes
        assert (summary[0] / "case000" / name).read_bytes() == (summary[1] / "case000" / name).read_bytes()
    t2 = [("t2", str(summary[0] / man.loc[0, "t2"]))]
    zones = _arr(read_image(str(summary[0] / man.loc[0, "zones"]), pixel_float=False))
    for col in ("seg", "rtstruct"):
        tz = load_mask(str(summary[0] / man.loc[0, col]), parse_mask_spec(f"{col}:tz"), images=t2)[0]
        np.testing.assert_array_equal(_arr(tz), zones == 2)


def test_seg_frames_left_out_are_empty_slices(tmp_path):
    """highdicom leaves out empty frames: gaps between a segment's slices stay empty."""
    grid = phantom.Grid((16, 16, 8), (0.5, 0.5, 3.0))
    case = phantom.generate_case(0, 0, grid)
    phantom.write_dicom_series(case["t2"], grid, str(tmp_path / "t2"), "c", 0)
    a = np.zeros(grid.shape, bool)
    a[1, 3:6, 4:9] = a[4, 8:12, 2:5] = a[7, 0, 0] = True  # slices 1, 4 and 7 only
    b = np.zeros(grid.shape, bool)
    b[2:4, 5, 5] = True
    phantom.write_seg({"A": a, "B": b}, str(tmp_path / "t2"), str(tmp_path / "seg.dcm"), "c", 0)
    t2 = [("t2", str(tmp_path / "t2"))]
    np.testing.assert_array_equal(_arr(load_mask(str(tmp_path / "seg.dcm"), parse_mask_spec("s:a"), images=t2)[0]), a)
    both = load_mask(str(tmp_path / "seg.dcm"), parse_mask_spec("s:A+b"), images=t2)[0]
    np.testing.assert_array_equal(_arr(both), a | b)

    # a FRACTIONAL SEG (probabilities, as AI products write them): voxels at 0.5 or more
    import highdicom as hd
    from pydicom.sr.codedict import codes

    prob = np.zeros(grid.shape, np.float32)
    prob[2:5, 4:9, 4:9] = 0.8
    prob[3, 5, 5], prob[2, 4, 4] = 0.3, 0.5
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Gland", segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Prostate, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name="net", version="1",
                                                                     family=codes.DCM.ArtificialIntelligence))
    frac = hd.seg.Segmentation(
        source_images=phantom._series_datasets(str(tmp_path / "t2")), pixel_array=prob,
        segmentation_type="FRACTIONAL", segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=3,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0")
    frac.save_as(str(tmp_path / "frac.dcm"))
    got = _arr(load_mask(str(tmp_path / "frac.dcm"), parse_mask_spec("f"), images=t2)[0])
    np.testing.assert_array_equal(got.astype(bool), prob >= 0.5)
