"""Training of `radlens finetune`, as a library: the paper's heads on an encoder, AdamW, cosine LR.

config.py    TrainConfig (optimisation settings), lr_factor (warm-up + cosine), mix_seed (seeds)
targets.py   encode_targets: a manifest column as class indices or a standardised value
augment.py   augment_batch: random flips and intensity scale/shift
data.py      collate, the indexed training subset, targets of a batch, the split datasets,
             the temporary preprocessing cache, the preprocessing pre-pass
metrics.py   per-case records, compute_metrics, the metrics CSV
resume.py    the resume state file (<output>.state) and RNG state
loop.py      run_training (the epoch loop) and evaluate
benchmark.py train_step_throughput, timed_throughput (benchmarks/encoders.py)
finetuned.py reading a `radlens finetune` checkpoint, its `finetune` record, the --save-every names

run.py       finetune: what `radlens finetune` runs (manifest, encoder, targets, outputs checked,
             training, the checkpoints and metrics CSV written); `encoders.training.finetune`

Each task's head, loss, records, metrics and CSV columns are one entry of
radlens_cli/encoders/tasks.py.

Determinism and resume: the batch order and the augmentation of each batch depend only
on (seed, epoch, step), and the global torch RNG (drop-path) is reseeded from
(seed, epoch, rank) at each epoch start, so a run resumed from `<output>.state` (the
last finished epoch: model, head, optimiser, scheduler, RNG states, best weights and
metric, metric history; written atomically by rank 0 after every epoch) ends with the
same weights on CPU as an uninterrupted one. The state file is removed on success.

`RADLENS_FINETUNE_KILL_AT_STEP=N` (tests only) sends SIGKILL to the process just before
global optimiser step N, to test resuming after `kill -9`.
"""

__all__ = ["finetune"]


def __getattr__(name):
    if name == "finetune":
        from radlens_cli.encoders.training.run import finetune  # heavy: loads torch, only when asked for
        return finetune
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
