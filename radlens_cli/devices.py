"""The one device resolver for everything that runs torch (embed, finetune, fit-share).

`auto` is CUDA when available, else the CPU; `cpu`; `cuda` (the current GPU, or under
torchrun the rank's own); `cuda:N`. Errors name the value, not a flag, so the function
serves Python callers as well as the commands.
"""

from __future__ import annotations

from radlens_cli.errors import UsageError

CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | None = "auto", local_rank: int | None = None):
    """The torch.device a device value names.

    local_rank: the process's GPU under torchrun (None for a single process): `cuda` means
    that GPU, and `cuda:N` for another N is refused (one GPU per rank).
    """
    import torch

    value = (spec or "auto").strip().lower()
    if value == "auto":
        value = "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return torch.device("cpu")
    if value != "cuda" and not value.startswith("cuda:"):
        raise UsageError(f"device {spec!r}: expected {CHOICES}")
    try:
        dev = torch.device(value)
    except RuntimeError:
        raise UsageError(f"device {spec!r}: expected {CHOICES}") from None
    if not torch.cuda.is_available():
        raise UsageError(f"device {spec}: CUDA is not available on this machine")
    if dev.index is None:
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    if dev.index >= torch.cuda.device_count():
        raise UsageError(f"device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if local_rank is not None and dev.index != local_rank:
        raise UsageError(f"device {spec} under torchrun: each rank uses its own GPU, give cuda")
    return dev
