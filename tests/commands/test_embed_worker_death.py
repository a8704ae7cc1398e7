"""embed -j: a DataLoader worker killed with SIGKILL while reading a case (the OOM killer's
way) fails that case, named, after one retry in a fresh loader; the other cases are
embedded and cached; a rerun completes and equals an uninterrupted run. Uses the test-only
RADLENS_TEST_KILL_WORKER hook. A dead loader worker is seen within torch's 5 s status check."""

import numpy as np

from radlens_cli.io.tables import read_table
from tests.encoders.conftest import SMALL, atto3, write_cohort  # noqa: F401 (fixtures)

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]


def test_killed_loader_worker_fails_its_case(cli, atto3, tmp_path, monkeypatch):
    manifest = write_cohort(str(tmp_path / "c"), n=4)
    cache = tmp_path / "cache"

    def embed(out, *extra):
        return cli("embed", manifest, *MODS, "--encoder", atto3, "-o", out, *SMALL, "-j", "2",
                   "--batch-size", "2", *extra)

    monkeypatch.setenv("RADLENS_TEST_KILL_WORKER", "p02")
    r = embed(tmp_path / "a.h5", "--cache-dir", cache)
    assert r.exit_code == 1, r
    retry = [ln for ln in r.stderr.splitlines() if "retrying it in a fresh worker" in ln]
    assert len(retry) == 1 and "reading case p02" in retry[0]
    assert "killed by signal 9 (SIGKILL; out of memory?)" in retry[0], r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("radlens embed: failed:")]
    assert len(failed) == 1 and "case p02" in failed[0] and "killed by signal 9" in failed[0], r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("radlens embed: error: 1 of 4 case(s) failed (p02")
    assert not (tmp_path / "a.h5").exists()

    monkeypatch.setenv("RADLENS_TEST_KILL_ONCE", str(tmp_path / "killed"))  # the retry succeeds
    r = embed(tmp_path / "once.h5")
    assert r.exit_code == 0 and "retrying it in a fresh worker" in r.stderr, r

    monkeypatch.delenv("RADLENS_TEST_KILL_WORKER")
    r = embed(tmp_path / "b.h5", "--cache-dir", cache)  # the rerun computes the lost batch only
    assert r.exit_code == 0 and "1 of 2 batch(es) read" in r.stderr, r
    assert embed(tmp_path / "fresh.h5").exit_code == 0
    b, fresh, once = (read_table(str(tmp_path / f)) for f in ("b.h5", "fresh.h5", "once.h5"))
    assert list(b.case_id) == ["p00", "p01", "p02", "p03"]
    assert np.array_equal(b.values, fresh.values) and np.array_equal(once.values, fresh.values)


def test_finetune_stops_naming_the_batch_of_a_killed_loader_worker(cli, tmp_path, monkeypatch):
    import csv

    from tests.commands.test_finetune import base_args, build_cohort

    root = tmp_path / "ft"
    manifest = build_cohort(root / "cases")
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    save_radlens_checkpoint(str(root / "pre.pt"), build_encoder("atto", 1), "convnextv2_atto", 1, None)
    c = {"manifest": manifest, "encoder": root / "pre.pt"}
    train = [r["case_id"] for r in csv.DictReader(open(manifest)) if r.get("split") == "train"]
    monkeypatch.setenv("RADLENS_TEST_KILL_WORKER", train[1])
    out = tmp_path / "o.pt"
    r = cli("finetune", *base_args(c, epochs=1), "-j", "2", "-o", out)
    assert r.exit_code == 1, r
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("radlens finetune: error: a data loader worker killed by signal 9 (SIGKILL; out of "
                           "memory?) while reading training batch "), r
    assert train[1] in last and "a rerun starts over" in last and "Traceback" not in r.stderr
    assert not out.exists()
