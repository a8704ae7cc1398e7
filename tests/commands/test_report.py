"""`radlens report`: sections, embedded figures, optional sections, errors, rendering."""

import base64
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pandas as pd
import pytest

from tests.report.conftest import make_inputs

REQUIRED = ("cohort", "table1", "fig2", "delta", "size", "provenance")
OPTIONAL = ("correlate", "cka", "probe", "metrics")


class Dom(HTMLParser):
    """Sections, tables, images (with decoded PNG bytes) and any external reference."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external, self.tags = [], [], [], []
        self.tables = 0
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "table":
            self.tables += 1
        if tag == "img":
            src = a.get("src", "")
            assert src.startswith("data:image/png;base64,"), src[:60]
            png = base64.b64decode(src.split(",", 1)[1], validate=True)
            self.images.append((a, png))
        for key in ("src", "href"):
            v = a.get(key) or ""
            if v and not v.startswith(("data:", "#")):
                self.external.append(v)

    def handle_data(self, data):
        self.text.append(data)


def parse(path) -> Dom:
    dom = Dom()
    dom.feed(open(path, encoding="utf-8").read())
    return dom


def _args(paths, out, optional=True, figures=None):
    args = ["report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "-o", out]
    if optional:
        args += ["--correlate-summary", paths["correlate_summary"], "--cka", paths["cka"], "--probe", paths["probe"],
                 "--metrics", paths["metrics"]]
    if figures:
        args += ["--figures", figures]
    return args


def test_full_report_in_a_path_with_spaces(cli, spaced_tmp):
    paths = make_inputs(spaced_tmp)
    out = spaced_tmp / "the report.html"
    figs = spaced_tmp / "figure folder"
    r = cli(*_args(paths, out, figures=figs))
    assert r.exit_code == 0, r
    assert r.stdout == ""
    dom = parse(out)
    assert dom.sections == [*REQUIRED[:5], *OPTIONAL, "provenance"]
    assert not dom.external and "script" not in dom.tags and "link" not in dom.tags
    assert dom.tables >= 10
    assert len(dom.images) >= 9
    for fig in ("fig2_r2_modality_family", "fig3_largest_gains", "fig3_largest_losses", "fig3_stable_features",
                "fig_delta_scatter", "fig_r2_by_family", "fig_probe", "fig_correlate", "fig_metrics_1"):
        assert (figs / f"{fig}.png").is_file(), fig
    written = {p: (figs / p).read_bytes() for p in os.listdir(figs)}
    assert len(written) == len(dom.images)
    for attrs, png in dom.images:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == int(attrs["width"]) > 50
        assert png in written.values()  # --figures holds the same PNGs
    text = re.sub(r"\s+", " ", " ".join(dom.text))
    for needle in ("Table 1", "Largest gains", "Largest losses", "Stable features", "First order", "GLCM",
                   "Pre-train", "Fine-tune", "sha256", "extract-radiomics"):
        assert needle in text, needle
    # Table 1's stars come from q_bh, not from the raw p the older stats table starred
    stats = pd.read_csv(paths["stats"])
    fam = stats[stats["group_by"] == "family"]
    qstar = lambda q: "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""
    for row in fam.itertuples():
        want = f"{row.mse_ft:.3f}" + (f" {qstar(row.q_bh)}" if qstar(row.q_bh) else "")
        assert f" {want} " in f" {text} ", (want, row.q_bh, row.wilcoxon_p)
    assert any(qstar(r.q_bh) != (r.stars if isinstance(r.stars, str) else "") for r in fam.itertuples())
    n_q = int((stats["q_bh"] < 0.05).sum())
    assert f"{n_q} of {len(stats)} Table-1 groups differ at q_bh < 0.05" in text
    # this older DELTA.csv has a bare ci_low/ci_high: listed under a generic label, never drawn as ΔI's
    html = open(out, encoding="utf-8").read()
    assert "bootstrap confidence interval" not in " ".join(re.findall(r"<figcaption>([^<]*)</figcaption>", html))
    assert "CI low (statistic not named)" in text and "change importance" not in text
    raw = pd.read_csv(paths["compare"])
    assert f"{int((raw['q_bh'] < 0.05).sum())} of {len(raw)} features changed beyond the null at q_bh" in text
    assert "test not recorded in the file" in text
    # the task comes from the metrics CSV (its qwk column), not from an assumption
    assert "fine-tuned to classify (target not recorded in the metrics CSV)" in text
    assert "gland volume" not in text.replace("(e.g. gland volume)", "")


def test_views_follow_the_delta_table(tmp_path):
    from radlens_cli.report.data import read_delta
    from radlens_cli.report.html import views

    paths = make_inputs(tmp_path)
    delta = read_delta(paths["compare"])
    raw = pd.read_csv(paths["compare"])
    dec = raw[(raw["r2_pre"] > 0) | (raw["r2_ft"] > 0)]  # the old table has no decodable column
    assert 0 < len(dec) < len(raw)
    gains, losses, stable, stat = views(delta, 5, 0.5, "delta_importance")
    assert stat == "delta_importance"
    assert list(gains["column"]) == list(dec.nlargest(5, "delta_importance")["column"])
    assert list(losses["column"]) == list(dec.nsmallest(5, "delta_importance")["column"])
    both = dec[(dec["importance_pre"] >= dec["importance_pre"].median())
               & (dec["importance_ft"] >= dec["importance_ft"].median())]
    expect = both.assign(a=both["delta_importance"].abs()).nsmallest(5, "a")["column"]
    assert list(stable["column"]) == list(expect)
    by_r2, _, _, _ = views(delta, 3, 0.5, "delta_r2")
    assert list(by_r2["column"]) == list(dec.nlargest(3, "delta_r2")["column"])
    # default: compare's own ranks, whose statistic is read from the values
    g, l_, _, stat = views(delta, 4, 0.5, None)
    assert stat == "delta_importance"
    assert list(g["column"]) == list(dec.sort_values("rank_gain")["column"][:4])


def test_minimal_inputs_leave_optional_sections_out(cli, tmp_path):
    paths = make_inputs(tmp_path, ci=False, perm=False)
    out = tmp_path / "r.html"
    r = cli(*_args(paths, out, optional=False))
    assert r.exit_code == 0, r
    dom = parse(out)
    assert dom.sections == list(REQUIRED)
    assert all(s not in dom.sections for s in OPTIONAL)
    assert "bootstrap CI" not in " ".join(dom.text)


@pytest.mark.parametrize("sep", ["/", ":", "|"])
def test_modality_family_separators(tmp_path, sep):
    from radlens_cli.report.data import modality_family_r2, read_delta, read_stats

    paths = make_inputs(tmp_path, sep=sep)
    mf = modality_family_r2(read_stats(paths["stats"]), read_delta(paths["compare"]))
    assert set(mf["source"]) == {"stats"}
    assert set(mf["modality"]) == {"t2", "dwi", "adc"} and "glcm" in set(mf["family"])
    # without modality_family rows, the per-feature R² of the compare table is averaged instead
    delta = read_delta(paths["compare"])
    stats = read_stats(paths["stats"])
    mf2 = modality_family_r2(stats[stats["group_by"] != "modality_family"], delta)
    assert set(mf2["source"]) == {"compare"}
    want = delta[(delta["modality"] == "t2") & (delta["family"] == "glcm")]["r2_ft"].mean()
    got = mf2[(mf2["modality"] == "t2") & (mf2["family"] == "glcm")]["r2_ft"].iloc[0]
    assert got == pytest.approx(want)


def test_same_inputs_same_bytes_and_stdout(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    paths = make_inputs(tmp_path)
    out = tmp_path / "r.html"
    assert cli(*_args(paths, out)).exit_code == 0
    first = out.read_bytes()
    assert cli(*_args(paths, out), "--force").exit_code == 0
    assert out.read_bytes() == first
    r = cli(*_args(paths, "-"))
    assert r.exit_code == 0 and r.stdout.startswith("<!DOCTYPE html>")


def test_output_exists_without_force(cli, tmp_path):
    paths = make_inputs(tmp_path)
    out = tmp_path / "r.html"
    out.write_text("keep me")
    r = cli(*_args(paths, out, optional=False))
    assert r.exit_code == 1
    assert r.stderr.strip() == f"radlens report: error: output exists: {out} (use --force to overwrite)"
    assert out.read_text() == "keep me"


def test_missing_or_bad_inputs_are_named(cli, tmp_path):
    paths = make_inputs(tmp_path)
    out = tmp_path / "r.html"
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", tmp_path / "nope.csv",
            "--stats", paths["stats"], "-o", out)
    assert r.exit_code == 1 and f"--compare file not found: {tmp_path / 'nope.csv'}" in r.stderr
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "-o", out)
    assert r.exit_code == 2 and "--stats" in r.stderr and "Traceback" not in r.stderr
    pd.read_csv(paths["compare"]).drop(columns=["delta_importance", "delta_r2", "r2_ft"]).to_csv(
        tmp_path / "bad.csv", index=False)
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", tmp_path / "bad.csv",
            "--stats", paths["stats"], "-o", out)
    assert r.exit_code == 1 and "bad.csv: missing column(s) delta_importance or delta_r2" in r.stderr
    # a table with Δr² only (no importance) is reported
    pd.read_csv(paths["compare"]).drop(columns=["delta_importance"]).to_csv(tmp_path / "r2only.csv", index=False)
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", tmp_path / "r2only.csv",
            "--stats", paths["stats"], "-o", tmp_path / "r2only.html")
    assert r.exit_code == 0, r.stderr
    r = cli("report", "--radiomics", paths["compare"], "--compare", paths["compare"],
            "--stats", paths["stats"], "-o", out)
    assert r.exit_code == 1 and "not an HDF5 file" in r.stderr
    r = cli(*_args(paths, out, optional=False), "--rank-by", "nonsense")
    assert r.exit_code == 2 and "--rank-by" in r.stderr
    r = cli(*_args(paths, out, optional=False), "--manifest", paths["stats"])
    assert r.exit_code == 2 and "--manifest, --modalities and --mask together" in r.stderr
    r = cli(*_args(paths, out, optional=False), "--checkpoint", "nope")
    assert r.exit_code == 1 and "--checkpoint nope: not in the compare table (checkpoints: fine-tuned)" in r.stderr
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part.html")]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHECK = ('<script>window.addEventListener("load",function(){var i=Array.from(document.images);'
         'var ok=i.filter(function(x){return x.complete&&x.naturalWidth>0;}).length;'
         'var m=document.createElement("div");m.id="render-check";m.textContent="images "+ok+"/"+i.length+'
         '" tables "+document.querySelectorAll("table").length;'
         # issue 25: q_bh/p_perm sat off-screen in a horizontal scroller; thumbnails were ~117 px
         'var w=document.documentElement.clientWidth;var th=Array.from(document.querySelectorAll("th"))'
         '.filter(function(x){return x.textContent=="q_bh"||x.textContent=="p_perm";});'
         'var vis=th.filter(function(x){var r=x.getBoundingClientRect();return r.right<=w+1;}).length;'
         'var pan=i.filter(function(x){return /fig_panels_(gains|losses)/.test(x.parentNode.id);})'
         '.map(function(x){return Math.floor(x.getBoundingClientRect().width/4);});'
         'm.textContent+=" qvisible "+vis+"/"+th.length+" thumb "+Math.min.apply(null,pan);'
         'document.body.appendChild(m);});</script>')


def test_renders_in_headless_chromium(cli, tmp_path):
    """The full report (optional sections, several checkpoints, image panels) in a real browser:
    every image decodes, every table is there; the panels stay under 1 MB."""
    import re

    browser = _chromium()
    if browser is None:
        # a system tool, not hardware: .ci/run installs it, so its absence fails rather than skips
        pytest.fail("chromium not installed (apt-get install chromium; .ci/run does)")
    r = cli("synth", "-o", tmp_path / "ph", "--cases", "20", "--seed", "1", "--size", "40,40,10")
    assert r.exit_code == 0, r.stderr
    paths = make_inputs(tmp_path, n_cases=20, fmt="new", checkpoints=("ft-epoch001", "ft-epoch002", "ft-epoch003"))
    out = tmp_path / "r.html"
    r = cli(*_args(paths, out), "--manifest", tmp_path / "ph" / "cohort.csv", "--modalities", "t2,dwi,adc",
            "--mask", "gland")
    assert r.exit_code == 0, r.stderr
    dom = parse(out)
    html = out.read_text(encoding="utf-8")
    panels = re.findall(r'<figure id="fig_panels_[a-z0-9_]+"><img src="data:image/png;base64,([^"]+)"', html)
    assert len(panels) == 11 and sum(map(len, panels)) < 1_000_000
    # a copy with a check script: the report itself carries no script
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run",
                            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--window-size=1200,900",
                            "--dump-dom",
                            probe.as_uri()], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(dom.images)
    assert f'id="render-check">images {n}/{n} tables {dom.tables} ' in r.stdout, r.stdout[-500:]
    m = re.search(r"qvisible (\d+)/(\d+) thumb (\d+)<", r.stdout)
    assert m and int(m.group(2)) > 0 and m.group(1) == m.group(2), m and m.group(0)   # no scrolling to q_bh
    assert int(m.group(3)) >= 200, m.group(0)       # every thumbnail at least 200 px wide on screen
    for sid in (*REQUIRED[:4], "checkpoints", "panels", "size", *OPTIONAL, "provenance"):
        assert f'<section id="{sid}">' in r.stdout, sid


def test_saliency_section_renders_in_headless_chromium(cli, tmp_path):
    """--saliency and --saliency-maps: the agreement table and the example cases' maps overlaid;
    every image decodes in a real browser, the report stays offline and small."""
    browser = _chromium()
    if browser is None:
        pytest.fail("chromium not installed (apt-get install chromium; .ci/run does)")
    r = cli("synth", "-o", tmp_path / "ph", "--cases", "20", "--seed", "1", "--size", "40,40,10")
    assert r.exit_code == 0, r.stderr
    man = tmp_path / "ph" / "cohort.csv"
    r = cli("saliency", man, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder",
            "tests.saliency.models:tiny_classifier", "--layer", "conv2", "--methods", "gradcam,eigencam,occlusion",
            "--crop", "32,32,16", "--spacing", "1,1,2", "--no-deletion", "--maps", tmp_path / "maps",
            "-o", tmp_path / "sal.csv")
    assert r.exit_code == 0, r.stderr
    paths = make_inputs(tmp_path, n_cases=20, fmt="new")
    out = tmp_path / "r.html"
    r = cli(*_args(paths, out), "--manifest", man, "--modalities", "t2,dwi,adc", "--mask", "gland",
            "--saliency", tmp_path / "sal.csv", "--saliency-maps", tmp_path / "maps")
    assert r.exit_code == 0, r.stderr
    html = out.read_text(encoding="utf-8")
    assert '<section id="saliency">' in html and "Grad-CAM" in html and "EigenCAM" in html
    assert re.search(r'<figure id="fig_saliency_0"><img src="data:image/png;base64,', html)
    assert out.stat().st_size < 5_000_000
    dom = parse(out)
    assert not dom.external
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run",
                            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
                            probe.as_uri()], capture_output=True, text=True, encoding="utf-8", errors="replace",
                           timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(dom.images)
    assert f'id="render-check">images {n}/{n} tables {dom.tables}' in r.stdout, r.stdout[-500:]
    # --saliency-maps without the example cases to draw them on is a usage error
    r = cli(*_args(paths, tmp_path / "x.html"), "--saliency-maps", tmp_path / "maps")
    assert r.exit_code == 2 and "--manifest" in r.stderr


def test_info_reads_the_reports_provenance_and_stats_from_stdin(cli, tmp_path):
    """Issue 25: `info report.html` leaked a pandas tokenizer error; `report --stats -` was
    refused though every file argument takes `-`."""
    import json

    from radlens_cli.provenance import sha256_file

    paths = make_inputs(tmp_path)
    out = tmp_path / "r.html"
    args = [a if a != paths["stats"] else "-" for a in _args(paths, out, optional=False)]
    r = cli(*args, "--top", "7", input=open(paths["stats"], "rb").read())
    assert r.exit_code == 0, r
    info = cli("info", "--json", out)
    assert info.exit_code == 0 and "Error" not in info.stderr, info
    d = json.loads(info.stdout)
    assert d["format"] == "HTML" and d["schema"] == "report/1"
    assert d["inputs"]["compare"]["sha256"] == sha256_file(paths["compare"])
    assert d["inputs"]["stats"]["path"] == "stdin"
    assert d["inputs"]["stats"]["sha256"] == sha256_file(paths["stats"])   # the piped bytes, hashed
    assert d["params"]["top"] == 7
    text = cli("info", out).stdout
    assert "input compare:" in text and "sha256" in text
    bad = cli(*[a if a not in (paths["stats"], paths["compare"]) else "-" for a in _args(paths, out, optional=False)],
              "-f", input=b"x")
    assert bad.exit_code == 2 and "only one input can be `-`" in bad.stderr
    (tmp_path / "other.html").write_text("<!DOCTYPE html><html><head><title>x &amp; y</title></head></html>")
    other = cli("info", tmp_path / "other.html")
    assert other.exit_code == 0 and "(HTML)" in other.stdout and "title: x & y" in other.stdout
    assert "tokeniz" not in other.stdout + other.stderr
