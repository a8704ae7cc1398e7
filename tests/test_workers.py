"""radlens_cli/workers.py: what a worker reports for an item that failed."""

import multiprocessing as mp
import pickle

from radlens_cli.errors import ParameterError, ParameterMessage
from radlens_cli.workers import imap_resilient


def _bad_mask(item):
    if item == "bad":
        raise ParameterError("{mask} zones:0: labels must be > 0", "mask", plain={"mask": "mask='zones:0'"})
    return item.upper()


def test_a_parameter_error_in_a_worker_keeps_its_parameters():
    out = {i: (status, value) for i, status, value in
           imap_resilient(_bad_mask, ["ok", "bad"], jobs=2, ctx=mp.get_context("spawn"))}
    assert out[0] == ("ok", "OK")
    status, value = out[1]
    assert status == "error" and isinstance(value, ParameterMessage)
    # plain names for Python and the failures table, the flag where the command line shows it
    assert value == "ParameterError: mask='zones:0' zones:0: labels must be > 0"
    assert value.flagged() == "ParameterError: --mask zones:0: labels must be > 0"


def test_parameter_messages_survive_pickling_with_their_flags():
    m = ParameterMessage("{kernel}: too many cases", "kernel", flags={"kernel": "--kernel linear"})
    back = pickle.loads(pickle.dumps(m))
    assert back == m == "kernel: too many cases" and back.flagged() == "--kernel linear: too many cases"
    e = ParameterError("{epochs} must be at least 1", "epochs", exit_code=1)
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == "epochs must be at least 1" and back.flagged() == "--epochs must be at least 1"
    assert back.exit_code == 1


def _hooked(item):
    from radlens_cli.workers import test_kill_hook

    test_kill_hook(item)
    return item


def test_the_kill_hook_reaches_forkserver_workers_started_before_it_was_set(monkeypatch, tmp_path):
    """A forkserver's children inherit the environment of the moment the server started (the
    process's first pool), not the driver's: the pool hands the hook's variables over."""
    if "forkserver" not in mp.get_all_start_methods():
        print("no forkserver start method on this platform: the spawn path is tested above")
        return
    ctx = mp.get_context("forkserver")
    monkeypatch.delenv("RADLENS_TEST_KILL_WORKER", raising=False)
    assert [s for _, s, _ in imap_resilient(_hooked, ["a", "b"], jobs=2, ctx=ctx)] == ["ok", "ok"]
    monkeypatch.setenv("RADLENS_TEST_KILL_WORKER", "b")
    monkeypatch.setenv("RADLENS_TEST_KILL_ONCE", str(tmp_path / "once"))
    deaths = []
    out = list(imap_resilient(_hooked, ["a", "b"], jobs=2, ctx=ctx, retries=1,
                              on_death=lambda i, how, retry: deaths.append((i, retry))))
    assert deaths == [(1, True)] and (tmp_path / "once").exists()
    assert sorted((i, s) for i, s, _ in out) == [(0, "ok"), (1, "ok")]
    monkeypatch.delenv("RADLENS_TEST_KILL_WORKER")             # unset again: no worker keeps it
    assert [s for _, s, _ in imap_resilient(_hooked, ["b"], jobs=1, ctx=ctx)] == ["ok"]


def test_a_parameter_error_in_a_dataloader_worker_keeps_its_parameters():
    """torch re-raises a worker's exception as type(e)(traceback text): CaseDataset notes the
    parameters in the traceback and worker_error gives the ParameterError back, fields and all."""
    import pytest
    import torch

    from radlens_cli.encoders.preprocess import CaseDataset, worker_error

    class Planted(CaseDataset):
        def __init__(self):  # no manifest: every item fails before reading one
            self.case_ids = ["c0", "c1"]

        def _item(self, i):
            raise ParameterError("{mask} zones:0: labels must be > 0", "mask", plain={"mask": "mask='zones:0'"},
                                 flags={"mask": "--mask zones:0"}, exit_code=1)

    loader = torch.utils.data.DataLoader(Planted(), batch_size=None, num_workers=1,
                                         multiprocessing_context=mp.get_context("fork"))
    with pytest.raises(ParameterError) as got:
        next(iter(loader))
    assert got.value.params == ()   # what torch hands over: the class, and the traceback as its text
    back = worker_error(got.value)
    assert isinstance(back, ParameterError) and back.params == ("mask",)
    assert str(back) == "mask='zones:0' zones:0: labels must be > 0"
    assert back.flagged() == "--mask zones:0 zones:0: labels must be > 0" and back.exit_code == 1
    # in the main process (no worker) the error is raised as it is, with no note
    with pytest.raises(ParameterError) as direct:
        Planted()[0]
    assert direct.value.params == ("mask",) and not getattr(direct.value, "__notes__", None)
    # an error without the note is a RadlensError with its one line and exit code
    plain = worker_error(RuntimeError("Caught X in DataLoader worker.\nOriginal Traceback:\n  ...\nValueError: bad"))
    assert type(plain).__name__ == "RadlensError" and str(plain) == "bad"


def test_parameter_error_wire_note_round_trips():
    e = ParameterError("{epochs} must be at least 1", "epochs", plain={"epochs": "epochs=0"},
                       flags={"epochs": "--epochs 0"}, exit_code=1)
    back = ParameterError.from_traceback_text("Traceback...\nParameterError: x\n" + e.wire_note())
    assert (back.template, back.params, back.plain, back.flags, back.exit_code) == \
        (e.template, e.params, e.plain, e.flags, e.exit_code)
    assert ParameterError.from_traceback_text("no note here") is None
