"""The wheel is a complete package: licence, presets and man pages inside, `--params paper`
working from an install that has no source tree beside it.

The wheel is built from a temporary copy of the repository (nothing is written into the
source tree) without build isolation, so no index is needed: the test extra brings
setuptools >= 77.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from radlens_cli import __version__
from tests.conftest import REPO

# build outputs, environments and the test data are not needed to build the wheel
IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", "tests", "work", "out", ".whl", "*.pyc")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "radlens"
    shutil.copytree(REPO, src, ignore=IGNORE, symlinks=True)
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(dist), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(dist.glob("radlens-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], r.stdout + r.stderr


def test_build_prints_no_deprecation_warning(wheel):
    _, log = wheel
    bad = [ln for ln in log.splitlines() if "deprecat" in ln.lower()]
    assert not bad, "\n".join(bad)


def test_wheel_carries_licence_presets_and_man_pages(wheel):
    path, _ = wheel
    assert path.name == f"radlens-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        dist_info = f"radlens-{__version__}.dist-info"
        assert z.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        meta = z.read(f"{dist_info}/METADATA").decode()
        assert "License-Expression: Apache-2.0" in meta and f"Version: {__version__}" in meta
        for name in ("paper", "quick"):
            src = REPO / "radlens_cli" / "radiomics" / "presets" / f"{name}.yaml"
            assert z.read(f"radlens_cli/radiomics/presets/{name}.yaml") == src.read_bytes()
        pages = sorted(p.name for p in (REPO / "man").glob("*.1"))
        assert len(pages) > 10 and "radlens.1" in pages
        for page in pages:
            member = f"radlens-{__version__}.data/data/share/man/man1/{page}"
            assert member in names, member
            assert z.read(member) == (REPO / "man" / page).read_bytes()
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in (REPO / "LICENSE").read_text()


def test_installed_wheel_resolves_presets_without_the_source_tree(wheel, tmp_path):
    """Installed into a bare folder and run from elsewhere: `--params paper` is the packaged
    file, and a one-case extraction with it gives the paper's 837 features."""
    path, _ = wheel
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                        "--no-index", "--target", str(target), str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (target / "share" / "man" / "man1" / "radlens-extract-radiomics.1").is_file()
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    # a one-case cohort: a textured 8x16x16 volume at 1x1x2 mm with a blob mask
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    z, y, x = np.indices((8, 16, 16))
    img = sitk.GetImageFromArray((100 + 20 * np.sin(x / 2.0) + rng.normal(0, 5, (8, 16, 16))).astype(np.float32))
    img.SetSpacing((1.0, 1.0, 2.0))
    mask = sitk.GetImageFromArray((((z - 4) / 3) ** 2 + ((y - 8) / 6) ** 2 + ((x - 8) / 6) ** 2 <= 1).astype(np.uint8))
    mask.CopyInformation(img)
    sitk.WriteImage(img, str(run_dir / "mr.nrrd"))
    sitk.WriteImage(mask, str(run_dir / "roi.nrrd"))
    (run_dir / "cohort.csv").write_text("case_id,mr,roi\nc1,mr.nrrd,roi.nrrd\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), TQDM_DISABLE="1")
    script = (
        "import sys, radlens_cli, radlens_cli.radiomics.params as p\n"
        "from radlens_cli.io.tables import read_table\n"
        "from radlens_cli.main import app\n"
        f"assert radlens_cli.__file__.startswith({str(target)!r}), radlens_cli.__file__\n"
        f"assert p.resolve_params('paper').startswith({str(target)!r}), p.resolve_params('paper')\n"
        "try:\n"
        "    app(['extract-radiomics', 'cohort.csv', '--modalities', 'mr', '--mask', 'roi',\n"
        "         '--params', 'paper', '-o', 'rad.h5'], prog_name='radlens')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print(len(read_table('rad.h5').columns))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=run_dir, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "837"
    r = subprocess.run([sys.executable, "-m", "radlens_cli", "extract-radiomics", "--print-params", "quick"],
                       cwd=run_dir, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == (REPO / "radlens_cli" / "radiomics" / "presets" / "quick.yaml").read_text()
