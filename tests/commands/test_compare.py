"""`radlens compare` through the CLI (more in tests/lens/test_cli_lens.py)."""

import re


def _compare_stable(stderr: str) -> list[str]:
    """The feature names compare prints under its 'least changed' view."""
    block = stderr.split("least changed", 1)[1].split("\n\n", 1)[0].splitlines()[2:]  # title, header
    return [ln.split()[0] for ln in block if ln.startswith("  ") and ln.strip() != "(none)"]


def _report_stable(html: str) -> list[str]:
    """The feature names the report lists in its 'Stable features' table."""
    part = html.split("<h3>Stable features</h3>", 1)[1]
    table = part[part.index("<table"):part.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
    return [re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)[0]).strip()
            for r in rows if "<td" in r]


def test_compare_and_report_list_the_same_stable_features(cli, lens_run, tmp_path):
    """The report draws the lens's own three views: with --rank-by delta_r2 both print the
    same least-changed features, in the same order."""
    d, _ = lens_run
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "delta.csv", "--rank-by", "delta_r2",
            "--top", "5")
    assert r.exit_code == 0, r
    from_compare = _compare_stable(r.stderr)
    assert len(from_compare) == 5
    assert cli("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "stats.csv").exit_code == 0
    r = cli("report", "--radiomics", d / "rad.h5", "--compare", tmp_path / "delta.csv", "--stats",
            tmp_path / "stats.csv", "-o", tmp_path / "report.html", "--rank-by", "delta_r2", "--top", "5")
    assert r.exit_code == 0, r
    assert _report_stable((tmp_path / "report.html").read_text(encoding="utf-8")) == from_compare


def test_report_views_are_the_lens_views_on_ties_and_gaps():
    """Where a re-implementation would drift (|delta| ties broken by name, a missing R^2, a
    gain that is not positive), the report's views are exactly compare's."""
    import numpy as np
    import pandas as pd

    from radlens_cli.lens.compare import three_views
    from radlens_cli.report.html import views

    rng = np.random.default_rng(3)
    n = 12
    df = pd.DataFrame({"column": [f"f{99 - i}" for i in range(n)],  # names in reverse order
                       "r2_pre": rng.uniform(0.2, 0.9, n), "importance_pre": rng.uniform(0.5, 2, n),
                       "importance_ft": rng.uniform(0.5, 2, n), "decodable": True})
    df["delta_r2"] = np.round(rng.normal(0, 0.1, n), 1)  # many ties in |delta_r2|
    df.loc[3, "delta_r2"] = -df.loc[5, "delta_r2"]
    df["r2_ft"] = df["r2_pre"] + df["delta_r2"]
    df.loc[7, "r2_ft"] = np.nan
    df["delta_importance"] = df["importance_ft"] - df["importance_pre"]
    want = three_views(df, k=4, stable_quantile=0.3, rank_by="delta_r2")
    got = views(df, 4, 0.3, "delta_r2")[:3]
    for (title, w), g in zip(want.items(), got):
        assert list(g["column"]) == list(w["column"]), title


def test_compare_refuses_a_part_of_a_sharded_run_as_decode_does(cli, lens_run, tmp_path):
    """A file recording one part of a sharded run is not a cohort: decode refuses such a table,
    compare such a decoder, with the same message (issue 24's left-over)."""
    import json
    import shutil

    import h5py

    d, _ = lens_run
    part = json.dumps({"part_id": 1, "num_parts": 2})
    for name in ("emb_ft.h5", "dec_ft.h5"):
        shutil.copy(d / name, tmp_path / name)
        with h5py.File(tmp_path / name, "a") as f:
            f.attrs["radlens_part"] = part
    said = "is part 1 of 2 of a sharded run, not a whole cohort; `radlens merge` the parts first"
    r = cli("decode", d / "share.h5", tmp_path / "emb_ft.h5", d / "rad.h5", "-o", tmp_path / "dec.h5")
    assert r.exit_code == 1 and f"{tmp_path / 'emb_ft.h5'}: {said}" in r.stderr
    for args in ([d / "dec_pre.h5", tmp_path / "dec_ft.h5"], [tmp_path / "dec_ft.h5", d / "dec_pre.h5"]):
        r = cli("compare", *args, "-o", tmp_path / "delta.csv")
        assert r.exit_code == 1 and f"{tmp_path / 'dec_ft.h5'}: {said}" in r.stderr, r
        assert not (tmp_path / "delta.csv").exists()
    assert cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "delta.csv").exit_code == 0
