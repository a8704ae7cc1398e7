"""Naming a layer of an encoder: the names --layer takes and the message for one that is not there."""

from __future__ import annotations

from radlens_cli.errors import ParameterError, UsageError


def unknown_layer(layer: str, names: list[str], what: str) -> UsageError:
    import difflib

    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.5)
    shown = close or names[:12]
    more = "" if close or len(names) <= 12 else f" (+{len(names) - 12} more)"
    return ParameterError(f"{{layer}} {layer}: no such {what}; {'close' if close else 'candidates'}: "
                          f"{', '.join(shown)}{more}; `radlens layers ENCODER` lists them with shapes", "layer")
