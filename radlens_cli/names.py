"""Names the whole project shares (ground floor: imports nothing above errors)."""

from __future__ import annotations

from radlens_cli.errors import ParameterError


def parse_list(text, param: str) -> list[str]:
    """Split a comma-separated list of names, refusing empty items and repeats.

    param: the parameter it came from, named in the error (`--<param>` on the command line)."""
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise ParameterError(f"{{{param}}}: give at least one name (comma-separated)", param)
    if len(set(items)) != len(items):
        raise ParameterError(f"{{{param}}}: a name is repeated in {text!r}", param)
    return items
