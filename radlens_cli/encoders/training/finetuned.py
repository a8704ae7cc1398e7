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
    from radlens_cli.encoders.heads import ClassifyHead, RegressHead, UPerNetHead

    # one weights-only read: the head and task live beside the encoder in the same file
    enc, info = load_encoder(path, map_location=map_location)
    meta = info["extra"].get("finetune")
    if not meta:
        raise RadlensError(f"{path}: not a radlens finetune checkpoint (no head recorded)")
    hc = dict(meta["head_config"])
    kind = hc.pop("type")
    n_classes = hc.pop("n_classes")
    in_dims = hc.pop("in_dims")
    if kind == "ClassifyHead":
        head = ClassifyHead(in_dims[-1], n_classes, **hc)
    elif kind == "RegressHead":
        head = RegressHead(in_dims[-1], **hc)
    else:
        head = UPerNetHead(in_dims, n_classes=1, **hc)
    head.load_state_dict(meta["head_state"])
    return enc, head.eval(), meta


def head_config(head, n_classes: int, in_dims, head_kwargs: dict) -> dict:
    """How to rebuild `head` (what load_finetuned reads back)."""
    return {"type": type(head).__name__, "n_classes": n_classes, "in_dims": list(in_dims), **head_kwargs}


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
