"""io/perturb.py: each perturbation changes what it says and nothing else; the outputs sit
on the original grids; zero strength reproduces the input; negative controls keep (or
replace) the ROI's values as READII defines them."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens_cli.errors import ParameterError
from radlens_cli.io import perturb as pt
from radlens_cli.io.manifest import MaskSpec, parse_mask_spec, read_manifest
from radlens_cli.synth import phantom

ZERO = pt.PerturbSettings(rotation=0, translation=0, noise=0, contour=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    phantom.write_cohort(str(out), cases=3, seed=0, size=(48, 48, 10))
    return out / "cohort.csv"


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    """T2 as a DICOM series, ADC on a coarser grid with a smaller field of view."""
    out = tmp_path_factory.mktemp("scanner")
    phantom.write_cohort(str(out), cases=2, seed=1, size=(40, 40, 8), scanner=True)
    return out / "cohort.csv"


def _case(manifest_path, i=0, modalities=("t2", "adc"), masks=("gland", "zones")):
    man = read_manifest(str(manifest_path))
    r = man.frame.iloc[i]
    images = {m: pt.read_image(man.resolve(r[m]), m) for m in modalities}
    labels = {c: pt._read_labels(man.resolve(r[c]), c, [(m, man.resolve(r[m])) for m in modalities])
              for c in masks}
    return str(r["case_id"]), images, labels


def _arr(img):
    return sitk.GetArrayFromImage(img)


def _hist_l1(a, b, bins=64):
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), bins + 1)
    ha = np.histogram(a, edges)[0] / a.size
    hb = np.histogram(b, edges)[0] / b.size
    return float(np.abs(ha - hb).sum())


def test_zero_strength_reproduces_input_exactly(cohort):
    cid, images, masks = _case(cohort)
    out_i, out_m, rec = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), ZERO, 0, cid, 1)
    for name in images:
        assert np.array_equal(_arr(out_i[name]), _arr(images[name]))
    for name in masks:
        assert np.array_equal(_arr(out_m[name]), _arr(masks[name]))
    assert rec["rotation_deg"] == 0 and rec["contour_voxels"] == 0 and rec["noise_added_sd_t2"] == 0
    assert rec["histogram_matched"] is False


def test_cohort_zero_strength_files_equal_input(cohort, tmp_path):
    man = read_manifest(str(cohort))
    frame = pt.perturb_cohort(man, str(tmp_path), ["t2", "adc"], parse_mask_spec("gland"), ["zones"], ZERO,
                              replicates=2, seed=0)
    assert frame["case_id"].tolist()[:2] == ["case000_r1", "case000_r2"]
    assert (frame["subject"].str.cat(frame["replicate"].astype(str), sep="_r") == frame["case_id"]).all()
    for _, r in frame.iterrows():
        src = man.frame.set_index("case_id").loc[r["subject"]]
        assert r["split"] == src["split"] and r["pirads"] == src["pirads"]
        for col in ("t2", "adc", "gland", "zones"):
            a = sitk.ReadImage(str(tmp_path / r[col]))
            b = sitk.ReadImage(man.resolve(src[col]))
            assert np.array_equal(_arr(a), _arr(b)), col
            assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()


def test_outputs_on_each_files_own_grid(scanner, tmp_path):
    """A DICOM T2 and a coarser ADC with a smaller field of view: every output keeps its
    input's lattice (size, spacing, origin, direction), read by SimpleITK and nibabel."""
    import nibabel as nib

    man = read_manifest(str(scanner))
    frame = pt.perturb_cohort(man, str(tmp_path), ["t2", "adc"], parse_mask_spec("gland"), ["zones"],
                              pt.PerturbSettings(negative_control="shuffled-roi"), replicates=1, seed=0)
    for _, r in frame.iterrows():
        src = man.frame.set_index("case_id").loc[r["subject"]]
        for col in ("t2", "adc", "gland", "zones"):
            a = sitk.ReadImage(str(tmp_path / r[col]))
            b = pt.read_image(man.resolve(src[col]), col)
            assert a.GetSize() == b.GetSize(), col
            assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
            assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
            assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
            nii = nib.load(str(tmp_path / r[col]))
            assert nii.shape == a.GetSize()
            assert np.allclose(np.abs(nii.header.get_zooms()), a.GetSpacing(), atol=1e-5)
    adc_t2 = [sitk.ReadImage(str(tmp_path / frame.iloc[0][c])).GetSpacing()[0] for c in ("adc", "t2")]
    assert adc_t2[0] > 2 * adc_t2[1]  # the ADC stayed on its own coarse grid


def test_resampled_histogram_smooths_noise(cohort):
    """keep_histogram=False (0.4.0's resampling, `--resampled-histogram`): a sub-voxel shift
    keeps the histogram (16 bins over the range, L1 between normalised histograms) within
    1 % on a smoothly varying volume; on the coarse, noisy phantom the interpolation
    averages noise (measured 4-11 %, docs/stability.md): the finest-scale noise (what
    estimate_noise_sd reads) about halves while the image's sd stays within 10 %."""
    rng = np.random.default_rng(0)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=(20, 48, 48)), 3) * 400 + 300 + rng.normal(0, 2, (20, 48, 48))
    smooth = sitk.GetImageFromArray(field.astype(np.float32))
    smooth.SetSpacing((0.5, 0.5, 1.5))
    shift = (0.5, -0.5, 0.25)
    moved = _arr(pt.transform_image(smooth, pt.rigid_transform(smooth, (0, 0, 0), 0.0, shift), keep_histogram=False))
    assert _hist_l1(_arr(smooth), moved, bins=16) < 0.01
    assert not np.allclose(moved, _arr(smooth), atol=1.0)
    cid, images, masks = _case(cohort)
    t = pt.rigid_transform(images["t2"], pt.roi_centroid(masks["gland"]), 0.0, shift)
    for name, img in images.items():
        moved = _arr(pt.transform_image(img, t, keep_histogram=False))
        assert 0.01 < _hist_l1(_arr(img), moved, bins=16) < 0.08, name  # moved more than the bound
        assert pt.estimate_noise_sd(moved) < 0.6 * pt.estimate_noise_sd(_arr(img)), name  # noise smoothed
        assert 0.9 < moved.std() / _arr(img).std() <= 1.0, name  # the content kept
    # a whole-voxel shift moves the content by exactly one voxel (B-spline interpolates)
    t1 = pt.rigid_transform(images["t2"], (0, 0, 0), 0.0, (1.0, 0.0, 0.0))
    moved = _arr(pt.transform_image(images["t2"], t1, keep_histogram=False))
    assert np.allclose(moved[:, :, :-1], _arr(images["t2"])[:, :, 1:], atol=1e-2)


@pytest.mark.parametrize("rotation,shift", [(0.0, (0.5, -0.5, 0.25)), (7.0, (0.0, 0.0, 0.0)),
                                            (-4.0, (0.3, 0.2, -0.4))])
def test_transform_keeps_histogram_by_default(cohort, rotation, shift):
    """The default (keep_histogram): a translated or rotated phantom image has the original's
    values exactly (L1 between normalised histograms 0 at 16 and 64 bins, within the
    issue's 1 %), sits elsewhere, and keeps the resampled image's order of values."""
    from scipy import stats

    cid, images, masks = _case(cohort, modalities=("t2", "adc", "dwi"))
    t = pt.rigid_transform(images["t2"], pt.roi_centroid(masks["gland"]), rotation, shift)
    for name, img in images.items():
        orig = _arr(img)
        resampled = _arr(pt.transform_image(img, t, keep_histogram=False))
        matched = _arr(pt.transform_image(img, t))
        assert matched.dtype == orig.dtype and matched.shape == orig.shape
        assert np.array_equal(np.sort(matched, axis=None), np.sort(orig, axis=None)), name  # the same values
        for bins in (16, 64):
            assert _hist_l1(orig, matched, bins) == 0.0, (name, bins)  # the issue asks <= 1 %
            assert _hist_l1(orig, resampled, bins) > 0.01, (name, bins)  # what matching removes
        assert np.mean(matched != orig) > 0.5, name  # moved
        order = np.argsort(resampled, axis=None, kind="stable")
        assert (np.diff(matched.ravel()[order].astype(np.float64)) >= 0).all(), name  # rank-preserving
        assert stats.spearmanr(resampled.ravel(), matched.ravel())[0] > 0.999, name  # 1 up to ties (DWI: integers)
        # the spatial noise spectrum stays the interpolated one's, rescaled: fine-scale noise still drops
        if shift[0] == 0.5:
            assert pt.estimate_noise_sd(matched) < 0.65 * pt.estimate_noise_sd(orig), name


def test_match_histogram_equals_ordinal_ranks():
    """Independent computation: scipy's ordinal ranks (ties by position) index the sorted
    reference; integer types stay integer with the reference's values; sizes must agree."""
    from scipy import stats

    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=(4, 6, 5)), 1)  # ties in the values too
    reference = rng.integers(-50, 300, size=(4, 6, 5)).astype(np.int16)
    out = pt.match_histogram(values, reference)
    expect = np.sort(reference, axis=None)[stats.rankdata(values, method="ordinal").astype(int) - 1]
    assert out.dtype == np.int16 and out.shape == values.shape
    assert np.array_equal(out.ravel(), expect)
    img = sitk.GetImageFromArray(reference)
    moved = pt.transform_image(img, pt.rigid_transform(img, (0, 0, 0), 5.0, (0.4, 0.0, 0.0)))
    assert moved.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(np.sort(_arr(moved), axis=None), np.sort(reference, axis=None))
    with pytest.raises(ParameterError, match="values"):
        pt.match_histogram(values[:2], reference)


def test_whole_voxel_shift_with_kept_histogram(cohort):
    """A one-voxel shift resamples exactly (B-spline interpolates) but the edge fill repeats
    the last column and loses the first, so the moved values are not the original's; the
    rank mapping moves each value by at most that column's share of ranks: every voxel's
    value lies within one column (ny x nz voxels) of ranks of the value shifted into it."""
    cid, images, masks = _case(cohort)
    for name, img in images.items():
        orig = _arr(img)
        t1 = pt.rigid_transform(img, (0, 0, 0), 0.0, (1.0, 0.0, 0.0))
        matched = _arr(pt.transform_image(img, t1))[:, :, :-1]
        source = orig[:, :, 1:]
        ref = np.sort(orig, axis=None)
        lo_m, hi_m = np.searchsorted(ref, matched, "left"), np.searchsorted(ref, matched, "right")
        lo_s, hi_s = np.searchsorted(ref, source, "left"), np.searchsorted(ref, source, "right")
        gap = np.maximum(0, np.maximum(lo_m - hi_s, lo_s - hi_m))
        column = orig.shape[0] * orig.shape[1]
        assert gap.max() <= column, name
        assert np.corrcoef(matched.ravel(), source.ravel())[0, 1] > 0.999, name
        assert np.array_equal(np.sort(_arr(pt.transform_image(img, t1)), axis=None), ref), name


def test_perturb_case_records_histogram_matching(cohort):
    """perturb_case matches the images, not the masks; histogram_matched is recorded only
    where a transform was applied; the same draw gives the same bytes; the old resampling
    is reachable (keep_histogram=False) with the same masks."""
    cid, images, masks = _case(cohort)
    moving = pt.PerturbSettings(rotation=10, translation=0.5, noise=0, contour=0)
    a = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), moving, 0, cid, 1)
    b = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), moving, 0, cid, 1)
    old = pt.perturb_case(images, masks, "gland", MaskSpec("gland"),
                          pt.PerturbSettings(rotation=10, translation=0.5, noise=0, contour=0, keep_histogram=False),
                          0, cid, 1)
    assert a[2]["histogram_matched"] is True and old[2]["histogram_matched"] is False
    assert a[2] == b[2] and {k: v for k, v in a[2].items() if k != "histogram_matched"} == \
        {k: v for k, v in old[2].items() if k != "histogram_matched"}
    for name in images:
        assert _arr(a[0][name]).tobytes() == _arr(b[0][name]).tobytes()
        assert np.array_equal(np.sort(_arr(a[0][name]), axis=None), np.sort(_arr(images[name]), axis=None))
        assert not np.array_equal(_arr(a[0][name]), _arr(old[0][name]))
    for name in masks:  # labels keep their resampling
        assert np.array_equal(_arr(a[1][name]), _arr(old[1][name]))
    noisy = pt.perturb_case(images, masks, "gland", MaskSpec("gland"),
                            pt.PerturbSettings(rotation=0, translation=0, noise=0.5, contour=1), 0, cid, 1)
    assert noisy[2]["histogram_matched"] is False  # no transform, nothing to match
    assert pt.perturb_case(images, masks, "gland", MaskSpec("gland"), moving, 0, cid, 0)[2]["histogram_matched"] \
        is False  # the original


def test_rotation_turns_about_the_roi_centre(cohort):
    cid, images, masks = _case(cohort)
    roi = masks["gland"]
    centre = pt.roi_centroid(roi)
    t = pt.rigid_transform(images["t2"], centre, 90.0, (0, 0, 0))
    turned = pt.transform_labels(roi, t)
    assert pt.roi_centroid(turned) == pytest.approx(centre, abs=0.6)  # about the centre: it stays
    a, b = _arr(roi) > 0, _arr(turned) > 0
    assert abs(int(a.sum()) - int(b.sum())) <= 0.05 * a.sum()  # volume kept
    assert (a != b).any()  # an ellipsoid turned by 90 degrees is not itself


def test_contour_randomisation_keeps_image_bytes(cohort):
    cid, images, masks = _case(cohort)
    settings = pt.PerturbSettings(rotation=0, translation=0, noise=0, contour=1)
    seen = set()
    for k in range(1, 7):
        out_i, out_m, rec = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), settings, 0, cid, k)
        for name in images:
            assert _arr(out_i[name]).tobytes() == _arr(images[name]).tobytes()
        assert np.array_equal(_arr(out_m["zones"]), _arr(masks["zones"]))  # other masks untouched
        before, after = _arr(masks["gland"]) > 0, _arr(out_m["gland"]) > 0
        step = rec["contour_voxels"]
        seen.add(step)
        assert step in (-1, 1)
        assert (after >= before).all() if step > 0 else (after <= before).all()
        # one voxel in-plane: every changed voxel is a face neighbour of the other mask in its slice
        changed = before ^ after
        assert changed.any()
        assert (changed.any(axis=(1, 2)) <= before.any(axis=(1, 2))).all()  # no new slice
    assert seen == {-1, 1}


def test_noise_estimate_and_added_level(cohort):
    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.add.outer(np.arange(6.0), np.arange(40.0)), np.arange(40.0)) * 3
    assert pt.estimate_noise_sd(smooth + rng.normal(0, 5.0, smooth.shape)) == pytest.approx(5.0, rel=0.05)
    cid, images, masks = _case(cohort)
    settings = pt.PerturbSettings(rotation=0, translation=0, noise=0.5, contour=0)
    out_i, _, rec = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), settings, 0, cid, 1)
    for name in images:
        diff = _arr(out_i[name]).astype(np.float64) - _arr(images[name])
        assert rec[f"noise_added_sd_{name}"] == pytest.approx(0.5 * rec[f"noise_sd_{name}"])
        assert diff.std() == pytest.approx(rec[f"noise_added_sd_{name}"], rel=0.03)
        assert rec[f"noise_sd_{name}"] > 0


def test_draws_independent_of_other_perturbations():
    a = pt.Draw.make(pt.PerturbSettings(), 0, "c1", 2)
    b = pt.Draw.make(pt.PerturbSettings(translation=0, noise=0, contour=0), 0, "c1", 2)
    assert a.rotation_deg == b.rotation_deg != 0
    assert pt.Draw.make(pt.PerturbSettings(), 0, "c1", 3).rotation_deg != a.rotation_deg
    assert abs(a.rotation_deg) <= pt.DEFAULT_ROTATION_DEG
    assert max(map(abs, a.translation_voxels)) <= pt.DEFAULT_TRANSLATION_VOXELS


@pytest.mark.parametrize("kind", pt.NEGATIVE_CONTROLS)
def test_negative_controls(cohort, kind):
    cid, images, masks = _case(cohort)
    settings = pt.PerturbSettings(rotation=0, translation=0, noise=0, contour=0, negative_control=kind)
    out_i, out_m, rec = pt.perturb_case(images, masks, "gland", MaskSpec("gland"), settings, 0, cid, 1)
    assert rec["negative_control"] == kind
    roi = _arr(masks["gland"]) > 0
    where = roi if kind.endswith("-roi") else np.ones_like(roi)
    for name in images:
        a, b = _arr(images[name]), _arr(out_i[name])
        assert np.array_equal(a[~where], b[~where])  # outside: untouched
        if kind.startswith("shuffled"):
            assert np.array_equal(np.sort(a[where]), np.sort(b[where]))  # the histogram exactly
        else:
            assert b[where].min() >= a[where].min() and b[where].max() <= a[where].max()
            assert not np.array_equal(np.sort(a[where]), np.sort(b[where]))
        assert not np.array_equal(a[where], b[where])


def test_bad_settings():
    with pytest.raises(ParameterError, match="rotation"):
        pt.PerturbSettings(rotation=-1).check()
    with pytest.raises(ParameterError, match="negative_control"):
        pt.PerturbSettings(negative_control="scrambled").check()
    with pytest.raises(ParameterError, match="keep_histogram"):
        pt.PerturbSettings(keep_histogram="yes").check()
