"""--cache-dir changes neither the values nor the recorded parameters (it once rebound --pool)."""

import json

import h5py
import numpy as np

from radlens_cli.io.tables import read_table
from tests.encoders.conftest import SMALL, atto3, cohort  # noqa: F401 (fixtures)

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]


def _params(path):
    with h5py.File(path) as f:
        return json.loads(f.attrs["params"])


def test_cached_and_uncached_runs_agree_on_values_and_parameters(cli, cohort, atto3, tmp_path):
    outs = {}
    for name, extra in (("plain", []), ("cached", ["--cache-dir", tmp_path / "cache", "-j", "2"])):
        out = tmp_path / f"{name}.h5"
        r = cli("embed", cohort, *MODS, "--encoder", atto3, "-o", out, *SMALL, "--layer", "stage2",
                "--pool", "mean", *extra)
        assert r.exit_code == 0, r
        outs[name] = out
    a, b = read_table(str(outs["plain"])), read_table(str(outs["cached"]))
    assert np.array_equal(a.values, b.values)
    pa, pb = _params(outs["plain"]), _params(outs["cached"])
    assert pa["pool"] == pb["pool"] == "mean"
    pa.pop("cache_dir"), pb.pop("cache_dir")
    assert pa == pb
    # and mean pooling it is: max pooling of the same layer gives other values
    r = cli("embed", cohort, *MODS, "--encoder", atto3, "-o", tmp_path / "max.h5", *SMALL, "--layer", "stage2",
            "--pool", "max", "--cache-dir", tmp_path / "cache")
    assert r.exit_code == 0, r
    assert not np.allclose(read_table(str(tmp_path / "max.h5")).values, a.values)
    assert _params(tmp_path / "max.h5")["pool"] == "max"
