"""Optimisation settings, the learning-rate schedule and seed mixing of finetune."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from radlens_cli.errors import ParameterError


@dataclass
class TrainConfig:
    """Optimisation settings (the paper: AdamW, lr 1e-3, 100 epochs)."""

    task: str
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 2
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    freeze_encoder: bool = False
    balanced: bool = False
    augment: bool = True
    seed: int = 0
    amp: bool = True
    max_steps: int | None = None
    timing_warmup_steps: int = 0
    num_workers: int = 0
    head_kwargs: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.epochs < 1:
            raise ParameterError(f"{{epochs}} must be at least 1 (got {self.epochs})", "epochs")
        if self.lr <= 0:
            raise ParameterError(f"{{lr}} must be positive (got {self.lr})", "lr")
        if self.batch_size < 1:
            raise ParameterError(f"{{batch_size}} must be at least 1 (got {self.batch_size})", "batch_size")
        if self.weight_decay < 0:
            raise ParameterError(f"{{weight_decay}} must be >= 0 (got {self.weight_decay})", "weight_decay")
        if self.warmup_epochs < 0:
            raise ParameterError(f"{{warmup_epochs}} must be >= 0 (got {self.warmup_epochs})", "warmup_epochs")
        if self.balanced and self.task != "classify":
            raise ParameterError("{balanced} applies to {task} classify only", "balanced", "task")


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from 1/warmup to 1 over `warmup` steps, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    t = min(1.0, (step - warmup) / rest)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def mix_seed(*ints: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    h = hashlib.sha256(":".join(str(int(i)) for i in ints).encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)
