import numpy as np
import pytest

from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.manifest import derive_split, parse_mask_spec, read_manifest


def test_split_is_deterministic_and_about_7_1_2():
    ids = [f"p{i}" for i in range(5000)]
    s1, s2 = derive_split(ids, 0), derive_split(ids, 0)
    assert list(s1) == list(s2)
    frac = {k: np.mean(s1 == k) for k in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.2) < 0.03
    # a case's split depends only on its own id
    assert list(derive_split(ids[:10], 0)) == list(s1[:10])
    assert list(derive_split(ids, 1)) != list(s1)


def test_mask_specs():
    assert parse_mask_spec("gland").labels is None
    assert parse_mask_spec("zones:1").labels == (1,)
    assert parse_mask_spec("zones:1+2").labels == (1, 2)
    assert str(parse_mask_spec("zones:1+2")) == "zones:1+2"
    seg = parse_mask_spec("seg: Prostate + #3 + lesion")
    assert (seg.column, seg.labels, seg.names) == ("seg", (3,), ("Prostate", "lesion"))
    assert parse_mask_spec("seg:#2") == parse_mask_spec("seg:2")
    assert str(parse_mask_spec(str(seg))) == str(seg)
    for bad in ("zones:0", "zones:#a", "zones:1+", ":1"):
        with pytest.raises(UsageError):
            parse_mask_spec(bad)


def test_manifest_paths_resolve_and_errors(tmp_path):
    (tmp_path / "m.csv").write_text("case_id,t2,gland,split\nA,img/a.nii.gz,/abs/m.nii.gz,train\nB,b.nii.gz,m.nii.gz,test\n")
    m = read_manifest(str(tmp_path / "m.csv"))
    assert m.paths("t2")[0] == str(tmp_path / "img" / "a.nii.gz")
    assert m.paths("gland")[0] == "/abs/m.nii.gz"
    assert not m.split_derived and list(m.split) == ["train", "test"]
    with pytest.raises(UsageError, match="unknown modality column\\(s\\) adc"):
        m.require_columns(["t2", "adc"], "modality")
    (tmp_path / "d.csv").write_text("case_id,t2\nA,a\nA,b\n")
    with pytest.raises(RadlensError, match="duplicate case_id A"):
        read_manifest(str(tmp_path / "d.csv"))
    (tmp_path / "n.csv").write_text("id,t2\nA,a\n")
    with pytest.raises(RadlensError, match="no `case_id` column"):
        read_manifest(str(tmp_path / "n.csv"))
    (tmp_path / "s.csv").write_text("case_id,t2,split\nA,a,training\n")
    with pytest.raises(RadlensError, match="case A has split 'training'"):
        read_manifest(str(tmp_path / "s.csv"))


def test_target_missing_values_named(tmp_path):
    (tmp_path / "m.csv").write_text("case_id,t2,vol\nA,a,1.5\nB,b,\nC,c,x\n")
    m = read_manifest(str(tmp_path / "m.csv"))
    with pytest.raises(RadlensError, match="target column vol .* case\\(s\\) B, C"):
        m.target("vol")


def test_shard_partitions_cases(tmp_path):
    rows = "\n".join(f"c{i},x" for i in range(11))
    (tmp_path / "m.csv").write_text("case_id,t2\n" + rows + "\n")
    m = read_manifest(str(tmp_path / "m.csv"))
    parts = [set(m.shard(k, 3).case_ids) for k in range(3)]
    assert set.union(*parts) == set(m.case_ids) and sum(map(len, parts)) == 11
