"""A phantom multi-parametric prostate MRI cohort that behaves like the real thing, small.

Each case is drawn from its own random stream (seed, case index), so case 7 is the same
whether the cohort has 10 or 1,000 cases. Everything is vectorised numpy over the voxel
grid; SimpleITK only writes the files.

Per case (arrays in SimpleITK's z, y, x order; physical space LPS, identity direction,
centred on the origin):

- a gland: an ellipsoid with random semi-axes, a small rotation about z and a low-order
  angular wobble of its surface, so size and shape vary;
- zones: the transition zone (label 2) is an inner ellipsoid shifted anteriorly; the
  rest of the gland is the peripheral zone (label 1). PZ is T2-bright with fine
  striated texture and high ADC; TZ is darker on T2 with coarser nodular texture and
  lower ADC;
- 0-2 lesions (P = 0.30, 0.45, 0.25), 70 % in the PZ, ellipsoids of random size with a
  conspicuity c in [0.15, 1] that blends the tissue towards lesion values: T2
  hypointense, ADC dark, and therefore bright on high-b DWI (DWI = S0 * exp(-b * ADC));
  the lesion mask labels each lesion 1, 2 and is empty for a patient without one;
- a smooth multiplicative bias field (T2 and DWI, each its own), Rician noise on the
  magnitude images (T2, DWI) and Gaussian noise on the ADC map;
- integer-valued volumes like a scanner's (T2 and DWI in arbitrary units, ADC in
  1e-6 mm^2/s), masks as uint8.

Targets: `gland_volume_ml` = gland mask voxels x voxel volume / 1000, and a PI-RADS-like
grade `pirads` (1-5) with `risk` in the paper's four groups (0: PI-RADS < 3, 1: 3,
2: 4, 3: 5). A lesion scores 2 when barely visible (c < 0.35), 3 when equivocal
(c < 0.6), otherwise 4, or 5 when its largest in-plane diameter is at least 35 % of the
gland's mean in-plane diameter (the phantom's stand-in for 1.5 cm); a case takes its
highest lesion score, 1 without a lesion.

Scanner mode writes T2 as a DICOM series folder and ADC/DWI on a coarser grid
(nearest integer multiple of the T2 in-plane spacing to 2 mm, same slices) with a
smaller field of view (85 %), made by averaging the fine phantom over each coarse voxel
(partial volume) before noise; masks stay on the T2 grid, and the segments Prostate, PZ,
TZ and Lesion are also written as a DICOM-SEG (highdicom) and an RTSTRUCT (contours
half-way between voxel centres, so they rasterise back to the same voxels) referencing
the T2 series.

Texture mode (`texture=True`; `synth --texture`) makes a phantom for negative controls
(READII's shuffled-roi, `perturb --negative-control`): each gland's tissue is multiplied by
1 + A x a Gaussian random field (A = 0.5 on T2, 0.3 on ADC, 0.2 on the DWI's S0) whose
in-plane correlation length `texture_mm` is the case's latent (log-uniform in 0.25-5 mm,
its own random stream; manifest column texture_mm). The field is standardised inside the
gland, so the gland's histogram is about the same for every case and only the texture's
scale differs. The rest is held nearly constant, because a shuffled-roi control keeps the
gland's size and histogram and anything that varies them would make a texture feature
readable without any texture: the gland has nearly one size (its semi-axes spread 15 % of
the default phantom's, b = 0.75 a), one zone proportion, its zones' own textures one
amplitude, and no lesion (pirads 1). Without texture mode nothing changes (the field has
its own random stream and the other draws are made as before).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.dicom_masks import RTSTRUCT_SOP_CLASS
from radlens_cli.io.files import atomic_folder, atomic_output
from radlens_cli.io.formats import write_csv

DEFAULT_SIZE = (64, 64, 16)          # x, y, z voxels of the T2 grid
DEFAULT_SPACING = (0.5, 0.5, 3.0)    # x, y, z mm (T2: 0.5 x 0.5 mm in-plane, 3 mm slices)
COARSE_MM = 2.0                      # scanner mode: ADC/DWI in-plane spacing (about)
COARSE_FOV = 0.85                    # scanner mode: ADC/DWI field of view, fraction of T2's
B_VALUE = 1400.0                     # s/mm^2 of the high-b DWI
LESION_COUNT_P = (0.30, 0.45, 0.25)
PZ_LESION_P = 0.7

# Tissue values: T2 (a.u.), ADC (1e-6 mm^2/s), S0 of the DWI (a.u.)
T2 = {"bg": 300.0, "pz": 620.0, "tz": 400.0, "lesion": 230.0}
ADC = {"bg": 1300.0, "pz": 1650.0, "tz": 1250.0, "lesion": 700.0}
S0 = {"bg": 400.0, "pz": 900.0, "tz": 850.0, "lesion": 900.0}

MODALITIES = ("t2", "dwi", "adc")
MASKS = ("gland", "zones", "lesion")


@dataclass
class Grid:
    """A voxel grid: size and spacing in x, y, z (SimpleITK order), origin of voxel 0."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        self.size = tuple(int(s) for s in self.size)
        self.spacing = tuple(float(s) for s in self.spacing)
        if self.origin is None:  # centred on the physical origin
            self.origin = tuple(-(n - 1) / 2.0 * s for n, s in zip(self.size, self.spacing))
        self.origin = tuple(float(o) for o in self.origin)

    @property
    def shape(self) -> tuple[int, int, int]:
        """numpy shape (z, y, x)."""
        return self.size[2], self.size[1], self.size[0]

    @property
    def fov(self) -> np.ndarray:
        return np.array(self.size) * np.array(self.spacing)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def axes(self):
        """Physical coordinates broadcastable to shape: x (1,1,X), y (1,Y,1), z (Z,1,1)."""
        x = self.origin[0] + self.spacing[0] * np.arange(self.size[0])
        y = self.origin[1] + self.spacing[1] * np.arange(self.size[1])
        z = self.origin[2] + self.spacing[2] * np.arange(self.size[2])
        return x[None, None, :], y[None, :, None], z[:, None, None]


def coarse_grid(fine: Grid) -> tuple[Grid, int]:
    """The scanner-mode ADC/DWI grid and its integer in-plane block factor over `fine`."""
    k = max(1, int(round(COARSE_MM / fine.spacing[0])))
    nx = max(1, int(COARSE_FOV * fine.size[0]) // k)
    ny = max(1, int(COARSE_FOV * fine.size[1]) // k)
    off_x = (fine.size[0] - nx * k) // 2
    off_y = (fine.size[1] - ny * k) // 2
    origin = (fine.origin[0] + (off_x + (k - 1) / 2.0) * fine.spacing[0],
              fine.origin[1] + (off_y + (k - 1) / 2.0) * fine.spacing[1],
              fine.origin[2])
    g = Grid((nx, ny, fine.size[2]), (fine.spacing[0] * k, fine.spacing[1] * k, fine.spacing[2]), origin)
    g.block = (k, off_x, off_y)  # type: ignore[attr-defined]
    return g, k


def block_average(arr: np.ndarray, fine: Grid, coarse: Grid) -> np.ndarray:
    """Mean of each k x k in-plane block of `arr` (z, y, x) under the coarse grid's voxels."""
    k, off_x, off_y = coarse.block  # type: ignore[attr-defined]
    nz, ny, nx = coarse.shape
    sub = arr[:, off_y:off_y + ny * k, off_x:off_x + nx * k]
    return sub.reshape(nz, ny, k, nx, k).mean(axis=(2, 4))


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


def _texture(rng, shape, spacing_zyx, sigma_mm_zyx) -> np.ndarray:
    """Unit-variance smooth Gaussian random field with correlation lengths in mm."""
    from scipy.ndimage import gaussian_filter

    sigma = [s / sp for s, sp in zip(sigma_mm_zyx, spacing_zyx)]
    f = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    sd = f.std()
    return f / sd if sd > 0 else f


def _bias(rng, grid: Grid, strength: float = 0.08) -> np.ndarray:
    """exp of a random quadratic polynomial of the normalised coordinates."""
    x, y, z = grid.axes()
    half = grid.fov / 2.0
    u, v, w = x / half[0], y / half[1], z / half[2]
    c = rng.normal(0.0, strength, size=7)
    return np.exp(c[0] * u + c[1] * v + c[2] * w + c[3] * u * u + c[4] * v * v + c[5] * u * v + c[6] * w * w)


def _rician(rng, clean: np.ndarray, sigma: float) -> np.ndarray:
    n1 = rng.normal(0.0, sigma, clean.shape)
    n2 = rng.normal(0.0, sigma, clean.shape)
    return np.sqrt((clean + n1) ** 2 + n2 ** 2)


def _to_int16(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 32767).astype(np.int16)


def case_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), 0x5EED])


def lesion_score(conspicuity: float, diameter_mm: float, gland_diameter_mm: float) -> int:
    """PI-RADS-like score of one lesion (2-5); see the module docstring."""
    if conspicuity < 0.35:
        return 2
    if conspicuity < 0.6:
        return 3
    return 5 if diameter_mm >= 0.35 * gland_diameter_mm else 4


def risk_group(pirads: int) -> int:
    """The paper's four PI-RADS groups: <3 -> 0, 3 -> 1, 4 -> 2, 5 -> 3."""
    return max(0, int(pirads) - 2)


# Texture mode (`texture=True`, `synth --texture`): a phantom for negative controls, whose
# cases differ mostly in the spatial scale of the gland's texture
TEXTURE_MM = (0.25, 5.0)             # range of the latent in-plane correlation length (log-uniform)
TEXTURE_AMP = {"t2": 0.5, "adc": 0.3, "s0": 0.2}  # relative modulation of each map by the field
TEXTURE_SIZE_SPREAD = 0.15           # the gland's semi-axes spread this fraction of the default's


def texture_rng(seed: int, index: int) -> np.random.Generator:
    """The texture mode's own stream: the phantom's other draws are the same with or without it."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), 0x7E47])


def latent_texture(seed: int, index: int, grid: Grid, gland: np.ndarray) -> tuple[float, np.ndarray]:
    """Texture mode's latent: a correlation length `texture_mm`, log-uniform in TEXTURE_MM, and
    a Gaussian random field with that correlation length in-plane (Gaussian kernel sd in mm;
    through-plane scaled by the voxel's aspect ratio, so the field has the same correlation
    in voxels along every axis and a 3 mm slice does not make it white through-plane),
    standardised over the gland's voxels (mean 0, sd 1 there): its histogram inside the
    gland is about the same for every case and only its spatial scale varies."""
    rng = texture_rng(seed, index)
    lo, hi = np.log(TEXTURE_MM[0]), np.log(TEXTURE_MM[1])
    scale = float(np.exp(rng.uniform(lo, hi)))
    aspect = grid.spacing[2] / min(grid.spacing[0], grid.spacing[1])
    f = _texture(rng, grid.shape, grid.spacing[::-1], (scale * aspect, scale, scale))
    inside = f[gland]
    f = (f - inside.mean()) / inside.std()
    return scale, f


def generate_case(index: int, seed: int = 0, grid: Grid | None = None, scanner: bool = False,
                  texture: bool = False) -> dict:
    """One phantom case as arrays (z, y, x) plus its targets.

    `texture`: the negative-control phantom (module docstring, "Texture mode"), with
    "texture_mm" in the result; the field's draws come from their own stream, and without
    `texture` nothing about the case changes.

    Returns {"grid", "dwi_grid", "t2", "dwi", "adc", "gland", "zones", "lesion",
    "gland_volume_ml", "pirads", "risk", "n_lesions", "lesions"}; "dwi_grid" is the grid
    of "dwi" and "adc" (the T2 grid unless `scanner`).
    """
    grid = grid or Grid(DEFAULT_SIZE, DEFAULT_SPACING)
    rng = case_rng(seed, index)
    x, y, z = grid.axes()
    half = grid.fov / 2.0
    sp_zyx = grid.spacing[::-1]

    # gland: ellipsoid, rotated about z, with an angular wobble of its surface
    centre = rng.uniform(-0.05, 0.05, 3) * half * np.array([1.0, 1.0, 0.5])
    a = rng.uniform(0.30, 0.60) * half[0]
    b = a * rng.uniform(0.65, 0.85)
    c = rng.uniform(0.30, 0.50) * half[2]
    if texture:  # nearly one size, so the gland's size does not stand in for its texture
        a = 0.45 * half[0] + TEXTURE_SIZE_SPREAD * (a - 0.45 * half[0])
        b = 0.75 * a
        c = 0.40 * half[2] + TEXTURE_SIZE_SPREAD * (c - 0.40 * half[2])
    theta = rng.uniform(-0.25, 0.25)
    e2, e3 = rng.uniform(0.0, 0.08, 2)
    p2, p3 = rng.uniform(0.0, 2 * np.pi, 2)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    xr = np.cos(theta) * dx + np.sin(theta) * dy
    yr = -np.sin(theta) * dx + np.cos(theta) * dy
    phi = np.arctan2(yr, xr)
    wobble = 1.0 + e2 * np.cos(2 * phi + p2) + e3 * np.cos(3 * phi + p3)
    d_gland = np.sqrt((xr / a) ** 2 + (yr / b) ** 2 + (dz / c) ** 2) / wobble
    gland = d_gland < 1.0
    if not gland.any():  # only possible on absurd --size/--spacing choices
        raise ParameterError(f"case {index}: the gland misses every voxel; use a finer {{spacing}} or larger {{size}}",
                             "spacing", "size")

    # transition zone: inner ellipsoid, shifted anteriorly (-y in LPS)
    s_tz = rng.uniform(0.45, 0.70)
    if texture:  # one zone proportion: it sets the gland's histogram (TZ is darker on T2 and ADC)
        s_tz = 0.575
    d_tz = np.sqrt((xr / (s_tz * a)) ** 2 + ((yr + 0.2 * b) / (s_tz * b)) ** 2 + (dz / (s_tz * c)) ** 2)
    tz = gland & (d_tz < 1.0)
    pz = gland & ~tz
    zones = np.zeros(grid.shape, np.uint8)
    zones[pz] = 1
    zones[tz] = 2

    # soft tissue weights (partial volume at the boundaries)
    w_gland = _sigmoid((1.0 - d_gland) / 0.04)
    w_tz = _sigmoid((1.0 - d_tz) / 0.06) * w_gland
    w_pz = w_gland - w_tz
    w_bg = 1.0 - w_gland

    # textures: background, PZ striated (long along y), TZ nodular
    tex_bg = _texture(rng, grid.shape, sp_zyx, (3.0, 2.5, 2.5))
    tex_pz = _texture(rng, grid.shape, sp_zyx, (3.0, 1.2, 0.5))
    tex_tz = _texture(rng, grid.shape, sp_zyx, (3.0, 1.8, 1.8))
    amp_pz = rng.uniform(0.04, 0.12)
    amp_tz = rng.uniform(0.06, 0.20)
    gain = rng.uniform(0.85, 1.15)
    if texture:  # the zones' own textures, of one amplitude
        amp_pz, amp_tz = 0.08, 0.13

    def tissue(vals, k_bg, k_pz, k_tz):
        return (w_bg * vals["bg"] * (1 + k_bg * tex_bg) + w_pz * vals["pz"] * (1 + k_pz * amp_pz * tex_pz)
                + w_tz * vals["tz"] * (1 + k_tz * amp_tz * tex_tz))

    t2 = gain * tissue(T2, 0.12, 1.0, 1.0)
    adc = tissue(ADC, 0.05, 0.5, 0.5)
    s0 = tissue(S0, 0.10, 0.3, 0.3)
    texture_mm = None
    if texture:
        texture_mm, field = latent_texture(seed, index, grid, gland)
        t2 = t2 * (1 + TEXTURE_AMP["t2"] * w_gland * field)
        adc = adc * (1 + TEXTURE_AMP["adc"] * w_gland * field)
        s0 = s0 * (1 + TEXTURE_AMP["s0"] * w_gland * field)

    # lesions
    n_les = int(rng.choice(3, p=LESION_COUNT_P))
    if texture:  # no lesion: a lesion changes the gland's histogram and texture case by case
        n_les = 0
    lesion_d = []
    lesions = []
    mean_ab = 0.5 * (a + b)
    for _ in range(n_les):
        zone = pz if (rng.random() < PZ_LESION_P and pz.any()) else (tz if tz.any() else gland)
        flat = np.flatnonzero(zone)
        k = flat[rng.integers(len(flat))]
        iz, iy, ix = np.unravel_index(k, grid.shape)
        cx, cy, cz = x[0, 0, ix], y[0, iy, 0], z[iz, 0, 0]
        # at least 4 voxels in-plane and 3 slices, so a lesion mask is a 3-D ROI PyRadiomics takes
        r = max(rng.uniform(0.15, 0.45) * mean_ab, 4 * max(grid.spacing[0], grid.spacing[1]))
        rx, ry = r * rng.uniform(0.8, 1.2, 2)
        rz = max(r * rng.uniform(0.8, 1.2), 1.05 * grid.spacing[2])
        conspicuity = rng.uniform(0.15, 1.0)
        d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2)
        w = conspicuity * _sigmoid((1.0 - d) / 0.12) * w_gland
        t2 = t2 * (1 - w) + gain * T2["lesion"] * w
        adc = adc * (1 - w) + ADC["lesion"] * w
        s0 = s0 * (1 - w) + S0["lesion"] * w
        lesion_d.append(d)
        lesions.append({"zone": "pz" if zone is pz else "tz", "conspicuity": float(conspicuity),
                        "diameter_mm": float(2 * max(rx, ry)), "centre_mm": [float(cx), float(cy), float(cz)]})
    lesion = np.zeros(grid.shape, np.uint8)
    if lesion_d:
        dstack = np.stack(lesion_d)
        inside = (dstack.min(axis=0) < 1.0) & gland
        lesion[inside] = (dstack.argmin(axis=0)[inside] + 1).astype(np.uint8)
    present = [i for i in range(len(lesions)) if (lesion == i + 1).any()]
    gland_diam = 2 * mean_ab
    scores = [lesion_score(lesions[i]["conspicuity"], lesions[i]["diameter_mm"], gland_diam) for i in present]
    for i, s in zip(present, scores):
        lesions[i]["score"] = s
        lesions[i]["volume_ml"] = float((lesion == i + 1).sum() * grid.voxel_ml)
    pirads = max(scores) if scores else 1

    dwi_clean = s0 * np.exp(-B_VALUE * adc * 1e-6)
    dwi_grid = grid
    if scanner:
        dwi_grid, _ = coarse_grid(grid)
        dwi_clean = block_average(dwi_clean, grid, dwi_grid)
        adc = block_average(adc, grid, dwi_grid)

    t2_img = _rician(rng, t2 * _bias(rng, grid), 0.025 * T2["pz"] * gain)
    dwi_img = _rician(rng, dwi_clean * _bias(rng, dwi_grid), 5.0)
    adc_img = adc + rng.normal(0.0, 40.0, adc.shape)

    return {
        "grid": grid, "dwi_grid": dwi_grid,
        "t2": _to_int16(t2_img), "dwi": _to_int16(dwi_img), "adc": _to_int16(adc_img),
        "gland": gland.astype(np.uint8), "zones": zones, "lesion": lesion,
        "gland_volume_ml": float(gland.sum() * grid.voxel_ml),
        "pirads": int(pirads), "risk": risk_group(pirads), "n_lesions": len(present),
        "lesions": [lesions[i] for i in present],
        **({"texture_mm": texture_mm} if texture else {}),
    }


# ------------------------------------------------------------------ writing

def _uid(*parts) -> str:
    """A deterministic DICOM UID (2.25.<decimal of 128 bits>, as for UUID-derived UIDs)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(h, "big"))


def _image(arr, grid: Grid):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def write_nifti(arr, grid: Grid, path: str) -> None:
    """Write (z, y, x) `arr` on `grid` as compressed NIfTI, atomically."""
    import SimpleITK as sitk

    with atomic_output(path, force=True, suffix=".nii.gz") as tmp:
        sitk.WriteImage(_image(arr, grid), tmp, useCompression=True)


def write_dicom_series(arr, grid: Grid, folder: str, case_id: str, seed: int,
                       description: str = "T2W TSE ax (radlens phantom)") -> None:
    """Write (z, y, x) int16 `arr` as one MR DICOM series, one file per slice, atomically.

    Deterministic: UIDs derive from (seed, case, slice) and dates are fixed, so the same
    seed gives the same bytes.
    """
    import SimpleITK as sitk

    img = _image(arr, grid)
    with atomic_folder(folder) as tmpdir:  # an earlier run's series goes (only with --force)
        study = _uid("radlens-synth", seed, case_id, "study")
        series = _uid("radlens-synth", seed, case_id, "series", description)
        frame = _uid("radlens-synth", seed, case_id, "frame")
        d = img.GetDirection()
        common = {
            "0008|0008": "ORIGINAL\\PRIMARY",
            "0008|0020": "20260101", "0008|0021": "20260101", "0008|0030": "120000",
            "0008|0031": "120000", "0008|0012": "20260101", "0008|0013": "120000",
            "0008|0060": "MR", "0008|0070": "radlens", "0008|103e": description,
            "0010|0010": f"PHANTOM^{case_id}", "0010|0020": case_id,
            "0018|0050": f"{grid.spacing[2]:g}", "0018|0088": f"{grid.spacing[2]:g}",
            "0020|000d": study, "0020|000e": series, "0020|0052": frame,
            "0020|0011": "1",
            "0020|0037": "\\".join(f"{v:g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        }
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for i in range(img.GetDepth()):
            # one-slice 3-D image: a 2-D slice would make GDCM write SpacingBetweenSlices 1
            sl = img[:, :, i:i + 1]
            for tag, value in common.items():
                sl.SetMetaData(tag, value)
            pos = img.TransformIndexToPhysicalPoint((0, 0, i))
            sl.SetMetaData("0020|0032", "\\".join(f"{p:.6f}" for p in pos))
            sl.SetMetaData("0020|1041", f"{pos[2]:.6f}")
            sl.SetMetaData("0020|0013", str(i + 1))
            sl.SetMetaData("0008|0018", _uid("radlens-synth", seed, case_id, "sop", description, i))
            writer.SetFileName(os.path.join(tmpdir, f"IM{i + 1:04d}.dcm"))
            writer.Execute(sl)


# Segments of the scanner-mode DICOM-SEG / RTSTRUCT: name, SNOMED CT property type, mask
SEGMENTS = (("Prostate", ("41216001", "Prostate"), "gland"),
            ("PZ", ("279706003", "Peripheral zone of prostate"), "pz"),
            ("TZ", ("399384005", "Transition zone of prostate"), "tz"),
            ("Lesion", ("52988006", "Lesion"), "lesion"))


def segment_masks(case: dict) -> dict[str, np.ndarray]:
    """The scanner-mode segments of a generated case, by name, as (z, y, x) bool arrays.
    Lesion is empty for a patient without one (a segment without any frame in the SEG)."""
    parts = {"gland": case["gland"] > 0, "pz": case["zones"] == 1, "tz": case["zones"] == 2,
             "lesion": case["lesion"] > 0}
    return {name: parts[key] for name, _, key in SEGMENTS}


def _series_datasets(folder: str) -> list:
    import pydicom

    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".dcm"))
    ds = [pydicom.dcmread(f) for f in files]
    return sorted(ds, key=lambda d: int(d.InstanceNumber))


def _atomic_dataset_write(ds, path: str, write) -> None:
    with atomic_output(path, force=True) as tmp:
        write(ds, tmp)


def write_seg(masks: dict[str, np.ndarray], series_folder: str, path: str, case_id: str, seed: int) -> None:
    """A BINARY DICOM-SEG (highdicom) of `masks` (name -> (z, y, x) bool on the series'
    grid; segment numbers 1, 2, ... in that order) referencing the DICOM series in
    `series_folder`. Empty frames are left out, so a segment that is empty everywhere
    has no frame. Deterministic UIDs and dates."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = _series_datasets(series_folder)
    known = {name: code for name, code, _ in SEGMENTS}
    descriptions = []
    for number, name in enumerate(masks, start=1):
        code, meaning = known.get(name, ("85756007", "Tissue"))
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.AnatomicalStructure if name != "Lesion"
            else codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=hd.sr.CodedConcept(code, "SCT", meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    pixels = np.stack([np.asarray(m, dtype=bool) for m in masks.values()], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=_uid("radlens-synth", seed, case_id, "seg-series"),
        series_number=100, sop_instance_uid=_uid("radlens-synth", seed, case_id, "seg"), instance_number=1,
        manufacturer="radlens", manufacturer_model_name="radlens synth", software_versions="radlens",
        device_serial_number="0", series_description="prostate segments (radlens phantom)")
    for key in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if key in seg:
            setattr(seg, key, "20260101")
    for key in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if key in seg:
            setattr(seg, key, "120000")
    # highdicom stamps the time of writing and a random dimension organisation UID: pin both
    for item in seg.get("ContributingEquipmentSequence", []) or []:
        if "ContributionDateTime" in item:
            item.ContributionDateTime = "20260101120000"
    org = _uid("radlens-synth", seed, case_id, "seg-dimensions")
    for key in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(key, []) or []:
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = org
    _atomic_dataset_write(seg, path, lambda ds, p: ds.save_as(p))


def mask_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed contours (column, row index coordinates) of a 2-D bool mask: marching squares
    at 0.5, so each contour runs half-way between voxel centres in and out; holes come out
    as inner contours. Rasterising them by the even-odd rule gives the mask back."""
    import contourpy

    padded = np.pad(mask2d.astype(np.float64), 1)
    gen = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    out = []
    for line in gen.lines(0.5):
        pts = np.asarray(line, dtype=np.float64) - 1.0
        if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
            pts = pts[:-1]
        if len(pts) >= 3:
            out.append(pts)
    return out


def write_rtstruct(masks: dict[str, np.ndarray], series_folder: str, path: str, case_id: str, seed: int) -> None:
    """An RTSTRUCT (pydicom) with one ROI per mask (name -> (z, y, x) bool on the series'
    grid), contours from `mask_contours` on every slice, referencing the series. A mask
    that is empty gives an ROI without contours."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    source = _series_datasets(series_folder)
    first = source[0]
    sop_uid = _uid("radlens-synth", seed, case_id, "rtstruct")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "2.25.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, sop_uid
    ds.Modality = "RTSTRUCT"
    for key in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "FrameOfReferenceUID"):
        if key in first:
            setattr(ds, key, first.data_element(key).value)
    ds.SeriesInstanceUID = _uid("radlens-synth", seed, case_id, "rtstruct-series")
    ds.SeriesNumber, ds.InstanceNumber = 101, 1
    ds.Manufacturer = "radlens"
    ds.StructureSetLabel = "radlens phantom"
    ds.StructureSetDate, ds.StructureSetTime = "20260101", "120000"
    contour_images = Sequence()
    for d in source:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = d.SOPClassUID, d.SOPInstanceUID
        contour_images.append(item)
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = contour_images
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.get("FrameOfReferenceUID", "")
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])

    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    dx, dy = (float(first.PixelSpacing[1]), float(first.PixelSpacing[0]))
    positions = [np.array([float(v) for v in d.ImagePositionPatient]) for d in source]
    rois, contours, observations = Sequence(), Sequence(), Sequence()
    for number, (name, mask) in enumerate(masks.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        roi.ReferencedFrameOfReferenceUID = frame.FrameOfReferenceUID
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        seq = Sequence()
        for k in range(mask.shape[0]):
            for pts in mask_contours(mask[k]):
                xyz = positions[k][None, :] + pts[:, :1] * dx * row_dir[None, :] + pts[:, 1:2] * dy * col_dir[None, :]
                c = Dataset()
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(xyz)
                c.ContourData = [f"{v:.4f}" for v in xyz.ravel()]
                ref = Dataset()
                ref.ReferencedSOPClassUID = source[k].SOPClassUID
                ref.ReferencedSOPInstanceUID = source[k].SOPInstanceUID
                c.ContourImageSequence = Sequence([ref])
                seq.append(c)
        if len(seq):
            rc.ContourSequence = seq
        contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = "ORGAN", ""
        observations.append(obs)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours
    ds.RTROIObservationsSequence = observations
    _atomic_dataset_write(ds, path, lambda d, p: pydicom.dcmwrite(p, d, enforce_file_format=True))


def split_cohort(n: int, seed: int) -> np.ndarray:
    """Patient-level 7:1:2 split in exact proportions, shuffled with the seed."""
    n_train = int(round(0.7 * n))
    n_val = int(round(0.1 * n))
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val), dtype=object)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5917])
    return labels[rng.permutation(n)]


def case_ids(n: int) -> list[str]:
    width = max(3, len(str(n - 1)))
    return [f"case{i:0{width}d}" for i in range(n)]


def write_cohort(out_dir: str, cases: int = 120, seed: int = 0, size=DEFAULT_SIZE,
                 spacing=DEFAULT_SPACING, scanner: bool = False, progress=None, texture: bool = False) -> dict:
    """Write a phantom cohort under `out_dir` and its manifest `cohort.csv` (written last).

    Layout: <out_dir>/<case_id>/{t2,dwi,adc,gland,zones,lesion}.nii.gz; in scanner mode
    t2 is a DICOM series folder <case_id>/t2/, with seg.dcm and rtstruct.dcm beside it
    (manifest columns seg, rtstruct). Returns a summary dict.
    """
    import pandas as pd

    if cases < 1:
        raise ParameterError("{cases} must be at least 1", "cases")
    grid = Grid(size, spacing)
    if min(grid.size) < 4:
        raise ParameterError(f"{{size}} {','.join(map(str, size))}: each axis needs at least 4 voxels", "size")
    if min(grid.spacing) <= 0:
        raise ParameterError("{spacing} must be positive", "spacing")
    ids = case_ids(cases)
    split = split_cohort(cases, seed)
    rows = []
    it = range(cases) if progress is None else progress(range(cases))
    for i in it:
        cid = ids[i]
        case = generate_case(i, seed, grid, scanner, texture)
        cdir = os.path.join(out_dir, cid)
        os.makedirs(cdir, exist_ok=True)
        row = {"case_id": cid}
        for name in MODALITIES + MASKS:
            row[name] = f"{cid}/{name}.nii.gz"
        if scanner:
            write_dicom_series(case["t2"], grid, os.path.join(cdir, "t2"), cid, seed)
            row["t2"] = f"{cid}/t2"
            segments = segment_masks(case)
            write_seg(segments, os.path.join(cdir, "t2"), os.path.join(cdir, "seg.dcm"), cid, seed)
            write_rtstruct(segments, os.path.join(cdir, "t2"), os.path.join(cdir, "rtstruct.dcm"), cid, seed)
            row["seg"], row["rtstruct"] = f"{cid}/seg.dcm", f"{cid}/rtstruct.dcm"
        else:
            write_nifti(case["t2"], grid, os.path.join(cdir, "t2.nii.gz"))
        write_nifti(case["dwi"], case["dwi_grid"], os.path.join(cdir, "dwi.nii.gz"))
        write_nifti(case["adc"], case["dwi_grid"], os.path.join(cdir, "adc.nii.gz"))
        for name in MASKS:
            write_nifti(case[name], grid, os.path.join(cdir, f"{name}.nii.gz"))
        row.update(split=split[i], gland_volume_ml=round(case["gland_volume_ml"], 4),
                   pirads=case["pirads"], risk=case["risk"], n_lesions=case["n_lesions"])
        if texture:
            row["texture_mm"] = round(case["texture_mm"], 4)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["case_id", *MODALITIES, *MASKS, "split", "gland_volume_ml",
                                        "pirads", "risk", "n_lesions", *(("texture_mm",) if texture else ()),
                                        *(("seg", "rtstruct") if scanner else ())])
    manifest = os.path.join(out_dir, "cohort.csv")
    write_csv(frame, manifest, force=True, float_format="%.4f", lineterminator="\n")
    return {"manifest": manifest, "cases": cases, "split": {s: int((split == s).sum()) for s in ("train", "val", "test")},
            "risk_counts": {int(k): int(v) for k, v in frame["risk"].value_counts().sort_index().items()},
            "gland_volume_ml": [float(frame["gland_volume_ml"].min()), float(frame["gland_volume_ml"].max())]}


def check_out_dir(out_dir: str, force: bool) -> None:
    """The output folder may be new or empty; a non-empty one needs force=True."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RadlensError(f"output is a file, not a folder: {out_dir}")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise ParameterError(f"output folder is not empty: {out_dir} (use {{force}} to write into it)", "force",
                             exit_code=EXIT_DATA, plain={"force": "force=True"})
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise RadlensError(f"output folder's parent does not exist: {parent}")
