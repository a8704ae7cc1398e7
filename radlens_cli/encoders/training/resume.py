"""The resume state of finetune (`<output>.state`, written after every epoch) and RNG state."""

from __future__ import annotations

import os

import torch

from radlens_cli.errors import EXIT_DATA, ParameterError
from radlens_cli.io.files import atomic_output

# the hint of a state file that cannot be resumed: run_training(resume=False), finetune --no-resume
_START_OVER = {"exit_code": EXIT_DATA, "plain": {"no_resume": "resume=False"}}

STATE_VERSION = 1


def save_atomic(obj, path: str) -> None:
    with atomic_output(path, force=True, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def rng_state() -> dict:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass


def load_state(path: str, fingerprint: str) -> dict | None:
    """The resume state at `path` if it belongs to this run (same fingerprint)."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file
        raise ParameterError(f"cannot read resume state {path}: {str(e).splitlines()[0] if str(e) else e}; "
                             "remove it or pass {no_resume}", "no_resume", **_START_OVER) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ParameterError(f"{path}: not a radlens finetune state file; remove it or pass {{no_resume}}",
                             "no_resume", **_START_OVER)
    if state.get("fingerprint") != fingerprint:
        raise ParameterError(f"{path}: resume state of a run with other inputs or settings; "
                             "remove it or pass {no_resume} to start over", "no_resume", **_START_OVER)
    return state
