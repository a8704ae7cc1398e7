"""Files of finetune: its checkpoint's `finetune` record (written by finetune_record, read
back by read_finetune_record, the one reader), the --save-every checkpoint names."""

from __future__ import annotations

import os

from radlens_cli.encoders.checkpoints import load_encoder, read_checkpoint
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.provenance import json_attr


def epoch_checkpoint_path(output: str, epoch: int) -> str:
    """`ft.pt` -> `ft-epoch003.pt`: where finetune --save-every writes epoch 3's checkpoint."""
    stem, ext = os.path.splitext(output)
    return f"{stem}-epoch{epoch:03d}{ext or '.pt'}"


def load_finetuned(path: str, map_location="cpu"):
    """(encoder, head, meta) of a `radlens finetune` checkpoint; meta is its `finetune` dict."""
    # heavy: loads torch
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


def read_finetune_record(path: str, param: str = "encoder") -> dict:
    """What a `radlens finetune` checkpoint records about its fine-tuning, without weights:
    path, task, target, epoch, run (a --save-every checkpoint), metric, best_epoch,
    freeze_encoder. Read weights-only (nothing in the file runs); `param` is the parameter
    that named the file, for the error."""
    try:
        obj = read_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - torch raises many types on a non-checkpoint
        raise ParameterError(f"{{{param}}} {path}: cannot read as a torch checkpoint: "
                             f"{str(e).splitlines()[0][:200]}", param, exit_code=EXIT_DATA) from None
    meta = obj.get("finetune") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "task" not in meta:
        raise ParameterError(f"{{{param}}} {path}: not a radlens finetune checkpoint (no task recorded)",
                             param, exit_code=EXIT_DATA)
    return {"path": path, "task": meta.get("task"), "target": meta.get("target"),
            "epoch": meta.get("epoch"), "run": meta.get("run"), "metric": meta.get("metric"),
            "best_epoch": meta.get("best_epoch"),
            "freeze_encoder": (meta.get("params") or {}).get("freeze_encoder")}


def finetuned_target(attrs: dict) -> tuple[str, str] | None:
    """(task, target) the encoder behind an embedding table was fine-tuned on, or None.

    Read from the table's params (`finetune_task`/`finetune_target`, when recorded) or from
    the radlens checkpoint the params name, when that file is still there; a checkpoint
    trained with its encoder frozen did not see the labels and gives None."""
    params = json_attr(attrs, "params", {})
    if not isinstance(params, dict):
        return None
    if params.get("finetune_target"):
        return str(params.get("finetune_task", "")), str(params["finetune_target"])
    path = params.get("encoder")
    if params.get("encoder_source") != "radlens" or not path or not os.path.isfile(str(path)):
        return None
    try:  # weights-only: naming a file in a table's params must not make probe run its code
        obj = read_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - an unreadable or unsafe checkpoint only means no warning
        return None
    ft = obj.get("finetune") if isinstance(obj, dict) else None
    if not isinstance(ft, dict) or not ft.get("target"):
        return None
    if (ft.get("params") or {}).get("freeze_encoder"):
        return None
    return str(ft.get("task", "")), str(ft["target"])
