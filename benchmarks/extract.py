"""radlens extract-radiomics -j N vs the pyradiomics CLI --jobs N on the same 10 jobs.

The 10 (case, params) jobs: PyRadiomics' five real cases (../shared/data/pyradiomics-cases),
each extracted twice with the paper's configuration (radlens_cli/radiomics/presets/paper.yaml):
as two modality columns for radlens, as ten batch rows for the CLI. One run of each, side by
side: wall times, their ratio (target: radlens <= 0.5x the CLI), and a check that every
feature value is identical.

    python benchmarks/extract.py [--jobs 2] [--params radlens_cli/radiomics/presets/paper.yaml] [--data PATH]
    python benchmarks/extract.py --params radlens_cli/radiomics/presets/quick.yaml   # quicker (~20 s)

--data: a folder holding pyradiomics-cases (or that folder itself); without it
$RADLENS_SHARED_DATA, ../shared/data and ../../shared/data are tried. A missing folder or
file ends the run with a message and exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")


def find_data(given: str | None) -> Path:
    """The pyradiomics-cases folder: under (or at) --data when given (no other place is then
    tried), else $RADLENS_SHARED_DATA, ../shared/data or ../../shared/data. Exits non-zero
    with a message when it, or one of its ten image/label files, is absent."""
    if given:
        candidates = [Path(given)]
    else:
        candidates = [Path(os.environ["RADLENS_SHARED_DATA"])] if os.environ.get("RADLENS_SHARED_DATA") else []
        candidates += [REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data"]
    for c in candidates:
        folder = c / "pyradiomics-cases" if (c / "pyradiomics-cases").is_dir() else c
        if folder.name == "pyradiomics-cases" and folder.is_dir():
            missing = [f"{case}_{kind}.nrrd" for case in CASES for kind in ("image", "label")
                       if not (folder / f"{case}_{kind}.nrrd").is_file()]
            if missing:
                sys.exit(f"benchmark: {folder} lacks {', '.join(missing)}")
            return folder
    sys.exit("benchmark: pyradiomics-cases not found (looked in "
             + ", ".join(str(c) for c in candidates) + "); pass --data PATH")


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--params", default=str(REPO / "radlens_cli" / "radiomics" / "presets" / "paper.yaml"))
    ap.add_argument("--data", default=None, help="folder holding pyradiomics-cases (or the folder itself); "
                    "when given, no other place is tried")
    args = ap.parse_args()
    data = find_data(args.data)
    cli = shutil.which("pyradiomics", path=str(Path(sys.executable).parent)) or shutil.which("pyradiomics")
    if not cli:
        sys.exit("benchmark: the pyradiomics executable is not installed")

    with tempfile.TemporaryDirectory(prefix="radlens-bench-") as tmp:
        tmp = Path(tmp)
        with open(tmp / "cohort.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "a", "b", "roi"])
            for c in CASES:
                img = data / f"{c}_image.nrrd"
                w.writerow([c, img, img, data / f"{c}_label.nrrd"])
        with open(tmp / "batch.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ID", "Image", "Mask"])
            for c in CASES:
                for copy in ("a", "b"):
                    w.writerow([f"{c}/{copy}", data / f"{c}_image.nrrd", data / f"{c}_label.nrrd"])

        env = dict(os.environ, TQDM_DISABLE="1")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        print(f"10 jobs (5 cases x 2) with {Path(args.params).name}, {args.jobs} jobs each; "
              f"{os.cpu_count()} CPUs, load average {loadavg()}")

        t0 = time.perf_counter()
        r = subprocess.run([cli, str(tmp / "batch.csv"), "--param", args.params, "--jobs", str(args.jobs),
                            "--out", str(tmp / "cli.csv"), "--format", "csv", "--verbosity", "1"],
                           env=env, capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"pyradiomics CLI failed:\n{r.stderr[-2000:]}")
        load_mid = loadavg()

        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "radlens_cli", "extract-radiomics", str(tmp / "cohort.csv"),
                            "--modalities", "a,b", "--mask", "roi:1", "--params", args.params,
                            "-j", str(args.jobs), "-o", str(tmp / "radlens.h5")],
                           env=env, capture_output=True, text=True, cwd=REPO)
        t_rad = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"radlens failed:\n{r.stderr[-2000:]}")

        sys.path.insert(0, str(REPO))
        from radlens_cli.io.tables import read_table

        table = read_table(str(tmp / "radlens.h5"))
        col = {c: j for j, c in enumerate(table.columns)}
        row = {c: i for i, c in enumerate(table.case_id)}
        n = n_equal = 0
        worst = 0.0
        with open(tmp / "cli.csv", newline="") as fh:
            for rec in csv.DictReader(fh):
                case, copy = rec["ID"].split("/")
                for key, text in rec.items():
                    if not key.startswith(("original_", "wavelet")):
                        continue
                    ours = table.values[row[case], col[f"{copy}/{key}"]]
                    theirs = float(text)
                    n += 1
                    if ours == theirs or (math.isnan(ours) and math.isnan(theirs)):
                        n_equal += 1
                    else:
                        worst = max(worst, abs(ours - theirs) / max(abs(theirs), 1e-300))
        per_job = len(table.columns) // 2

    print(f"{'':28s}{'wall s':>10s}")
    print(f"{'pyradiomics CLI --jobs ' + str(args.jobs):28s}{t_cli:10.1f}")
    print(f"{'radlens extract -j ' + str(args.jobs):28s}{t_rad:10.1f}")
    print(f"ratio radlens / CLI: {t_rad / t_cli:.2f} (target <= 0.50)")
    print(f"features: {per_job} per job; {n_equal} of {n} values identical"
          + (f"; largest relative difference {worst:.2e}" if n_equal < n else ""))
    print(f"load average during the CLI run {load_mid}, after {loadavg()}")


if __name__ == "__main__":
    main()
