import h5py
import numpy as np
import pytest

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import open_h5, write_h5
from radlens_cli.io.tables import align_cases, read_table, write_table
from tests.conftest import make_table


def test_h5_roundtrip_keeps_everything(tmp_path):
    t = make_table()
    t.column_meta["modality"] = np.array(["t2"] * 5, dtype=object)
    write_table(t, str(tmp_path / "a.h5"), attrs={"command": "x"})
    r = read_table(str(tmp_path / "a.h5"))
    assert list(r.case_id) == list(t.case_id)
    np.testing.assert_array_equal(r.values, t.values)
    assert r.columns == t.columns and list(r.split) == list(t.split)
    assert list(r.column_meta["modality"]) == ["t2"] * 5
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["radlens_schema"] == "case-table/1"


def test_csv_roundtrip_is_exact(tmp_path):
    t = make_table()
    write_table(t, str(tmp_path / "a.csv"))
    r = read_table(str(tmp_path / "a.csv"))
    np.testing.assert_array_equal(r.values, t.values)
    assert list(r.split) == list(t.split)


def test_same_content_same_bytes(tmp_path):
    t = make_table()
    write_table(t, str(tmp_path / "a.h5"), attrs={"k": "v"})
    write_table(t, str(tmp_path / "b.h5"), attrs={"k": "v"})
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_refuses_overwrite_without_force_and_leaves_no_temp(tmp_path):
    t = make_table()
    out = tmp_path / "a.h5"
    write_table(t, str(out))
    with pytest.raises(RadlensError, match=r"use force=True to overwrite") as e:  # the library names the parameter
        write_table(t, str(out))
    assert "use --force to overwrite" in e.value.flagged()  # what the command line prints
    write_table(t, str(out), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


def test_missing_output_folder_is_named(tmp_path):
    with pytest.raises(RadlensError, match="output folder does not exist"):
        write_table(make_table(), str(tmp_path / "nope" / "a.h5"))


def test_duplicate_case_ids_and_columns_rejected(tmp_path):
    t = make_table()
    t.case_id[3] = t.case_id[2]
    with pytest.raises(RadlensError, match="duplicate case_id: case002"):
        t.validate()
    t = make_table()
    t.columns[1] = "c0"
    with pytest.raises(RadlensError, match="duplicate column: c0"):
        t.validate()


def test_not_a_radlens_file_and_truncated(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["values"] = np.zeros(3)
    with pytest.raises(RadlensError, match="not a radlens file"):
        read_table(str(tmp_path / "x.h5"))
    write_table(make_table(n=200, p=50), str(tmp_path / "t.h5"))
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(RadlensError, match="t.h5"):
        read_table(str(tmp_path / "t.h5"))


def test_wrong_schema_kind_named(tmp_path):
    write_h5(str(tmp_path / "s.h5"), "share-model/1", {"w": np.zeros(2)})
    with pytest.raises(RadlensError, match="is a radlens share-model/1, expected case-table/1"):
        read_table(str(tmp_path / "s.h5"))
    with open_h5(str(tmp_path / "s.h5"), "share-model/1") as f:
        assert f["w"].shape == (2,)


def test_require_finite_names_case_and_column():
    t = make_table()
    t.values[4, 2] = np.nan
    with pytest.raises(RadlensError, match="case004, column c2"):
        t.require_finite("x")


def test_align_by_case_id_not_order():
    a = make_table(n=10)
    b = a.take(rows=np.arange(10)[::-1])
    ia, ib = align_cases(a, b)
    np.testing.assert_array_equal(a.values[ia], b.values[ib])


def test_align_mismatch_names_ids():
    a = make_table(n=10)
    b = a.take(rows=np.arange(8))
    with pytest.raises(RadlensError, match="2 case\\(s\\) only in .*case008, case009"):
        align_cases(a, b)
    ia, ib = align_cases(a, b, allow_missing=True)
    assert len(ia) == 8


def test_csv_non_numeric_named(tmp_path):
    (tmp_path / "a.csv").write_text("case_id,x,y\na,1,2\nb,3,oops\n")
    with pytest.raises(RadlensError, match="column y is not numeric \\(case b"):
        read_table(str(tmp_path / "a.csv"))


def test_one_atomic_writer_for_files_npz_and_checkpoints(tmp_path):
    """atomic_path renames into place only on success; save_npz/save_torch go through it."""
    import os

    import pytest
    import torch

    from radlens_cli.errors import RadlensError, UsageError
    from radlens_cli.io.files import atomic_path, save_npz, save_torch

    target = tmp_path / "f.json"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary
    with atomic_path(str(target), tmp=str(tmp_path / "f.json.123.tmp"), fsync=True) as tmp:
        open(tmp, "w").write("whole")
    assert target.read_text() == "whole" and os.listdir(tmp_path) == ["f.json"]
    assert (target.stat().st_mode & 0o777) == 0o644

    save_npz(str(tmp_path / "a.npz"), x=np.arange(3))
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    save_torch({"w": torch.ones(2)}, str(tmp_path / "m.pt"))
    assert torch.load(tmp_path / "m.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(RadlensError, match="output exists"):
        save_torch({}, str(tmp_path / "m.pt"))
    with pytest.raises(UsageError, match="not stdout"):
        save_torch({}, "-")
