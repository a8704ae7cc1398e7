"""What to cite: CITATION.cff at the root (the tool, the method papers) and the same in the
`cite` provenance attribute every output carries."""

import json
import yaml

from radlens_cli import __version__, provenance
from tests.conftest import REPO


def test_citation_cff_names_radlens_and_the_method_papers():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == __version__  # bumped with radlens_cli/__init__.py
    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python >= 3.11 only)
    assert cff["license"] == "Apache-2.0" and '\nlicense = "Apache-2.0"\n' in pyproject
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "radlens_cli.__version__" }' in pyproject
    titles = [r["title"] for r in cff["references"]]
    assert any("A Radiomic Lens on Prostate Foundation Model" in t for t in titles)
    assert any(t.startswith("Rad4XCNN") for t in titles)
    for ref in cff["references"]:
        assert ref["authors"] and ref["year"], ref["title"]


def test_every_output_records_what_to_cite():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    attrs = provenance.build("test", params={"seed": 0})
    assert attrs["cite"] == provenance.CITE and f"radlens {__version__}" in attrs["cite"]
    for ref in cff["references"]:  # the attribute and CITATION.cff stay in step
        assert ref["title"] in attrs["cite"], ref["title"]
        assert ref["authors"][0]["family-names"] in attrs["cite"]
    json.dumps(attrs)  # plain strings: HDF5 attributes and provenance.json take them as they are
