"""Files of finetune: reading its checkpoint back, the --save-every checkpoint names."""

from __future__ import annotations

import os

from radlens_cli.errors import RadlensError


def epoch_checkpoint_path(output: str, epoch: int) -> str:
    """`ft.pt` -> `ft-epoch003.pt`: where finetune --save-every writes epoch 3's checkpoint."""
    stem, ext = os.path.splitext(output)
    return f"{stem}-epoch{epoch:03d}{ext or '.pt'}"


def load_finetuned(path: str, map_location="cpu"):
    """(encoder, head, meta) of a `radlens finetune` checkpoint; meta is its `finetune` dict."""
    from radlens_cli.encoders.checkpoints import load_encoder
    from radlens_cli.encoders.tasks import head_from_config

    # one weights-only read: the head and task live beside the encoder in the same file
    enc, info = load_encoder(path, map_location=map_location)
    meta = info.extra.get("finetune")
    if not meta:
        raise RadlensError(f"{path}: not a radlens finetune checkpoint (no head recorded)")
    head = head_from_config(meta["head_config"])
    head.load_state_dict(meta["head_state"])
    return enc, head.eval(), meta


def finetune_record(task: str, target: str, targets, head_config: dict, head_state: dict, metric: str,
                    history: list, params: dict, encoder_source: dict, intermediate: bool = False,
                    **fields) -> dict:
    """The `finetune` entry of a checkpoint's extra: task, target, head, metrics, parameters.

    fields: best_epoch/best_metric (the final checkpoint) or epoch/run/val (--save-every).
    """
    rec = {"task": task, "target": target, "classes": targets.classes,
           "target_scaling": targets.scaling(task), "head_config": head_config, "head_state": head_state,
           "metric": metric, **fields, "metrics": history, "params": params}
    if intermediate:
        rec["intermediate"] = True
    rec["encoder_source"] = encoder_source
    return rec
