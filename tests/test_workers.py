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
