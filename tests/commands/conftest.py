"""Fixtures for the per-command tests of correlate / cka / probe (the planted pair of tests/planted.py;
the session's lens run is tests/conftest.py's `lens_run`)."""

from __future__ import annotations

import pytest

from radlens_cli.io.tables import write_table
from tests.planted import RAD_COLUMNS, planted_pair  # noqa: F401 (used by the command tests)


@pytest.fixture
def tables(tmp_path):
    """Paths (emb.h5, rad.h5) of a planted pair."""
    emb, rad = planted_pair()
    write_table(emb, str(tmp_path / "emb.h5"))
    write_table(rad, str(tmp_path / "rad.h5"))
    return tmp_path / "emb.h5", tmp_path / "rad.h5"
