"""Saliency cost: `saliency --methods gradcam` on every case vs `embed` of the same cases, side by side.

    python benchmarks/saliency.py                 # the example cohort (synth 80 cases, 64x64x16), atto, CPU
    python benchmarks/saliency.py --cases 20      # quicker
    python benchmarks/saliency.py --cases 2 --repeat 1 --threads 1   # smoke run, ~5 s

Both run end to end from the manifest (reading, resampling, normalisation, the model), as the
library calls the commands make (encoders.embed_cohort, saliency.cohort.saliency_cohort), with
the built-in atto encoder; saliency uses a finetune-style checkpoint (the same encoder with a
classification head). Printed: seconds per case of embed, of Grad-CAM as the command runs by
default (the table, no deletion curve), of Grad-CAM with its deletion curve (--deletion), and
with the NIfTI maps written; each as a ratio to embed. The issue's target: Grad-CAM for all
cases at most ~3x embed. Every run is repeated (--repeat, interleaved: embed, the saliency
runs, embed, ...) and its fastest time kept; beside the wall time, the process's CPU time,
which a busy shared machine skews far less (the other jobs stretch the clock, not the work).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402


def finetune_style_checkpoint(path: str, in_chans: int = 3, n_classes: int = 3) -> None:
    """The atto encoder with the paper's classification head, stored as finetune stores it."""
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder
    from radlens_cli.encoders.tasks import build_head, head_config

    torch.manual_seed(0)
    enc = build_encoder("atto", in_chans)
    head = build_head("classify", enc, n_classes).eval()
    meta = {"task": "classify", "head_config": head_config(head, n_classes, list(enc.dims), {}),
            "head_state": head.state_dict()}
    save_radlens_checkpoint(path, enc, "convnextv2_atto", in_chans, None, extra={"finetune": meta})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=80)
    ap.add_argument("--crop", default="32,32,16")
    ap.add_argument("--spacing", default="1,1,2")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each, the fastest kept")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: up to 4]; 1 keeps a "
                    "shared machine's contention out of the CPU time (no spinning threads)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or max(1, min(4, os.cpu_count() or 1)))
    from radlens_cli.encoders import embed_cohort
    from radlens_cli.io.tables import write_table
    from radlens_cli.saliency.cohort import saliency_cohort
    from radlens_cli.synth.phantom import write_cohort

    crop = tuple(int(v) for v in args.crop.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))

    def embed(manifest, out, **kw):  # what `radlens embed` does, less provenance
        write_table(embed_cohort(manifest, ["t2", "dwi", "adc"], "gland", ck, **kw).table, out, force=True)

    with tempfile.TemporaryDirectory() as d:
        write_cohort(os.path.join(d, "cohort"), cases=args.cases, seed=0, size=(64, 64, 16), spacing=(0.5, 0.5, 3))
        man = os.path.join(d, "cohort", "cohort.csv")
        ck = os.path.join(d, "ft.pt")
        finetune_style_checkpoint(ck)
        common = dict(spacing=spacing, crop=crop, device="cpu")
        runs, cpu = {}, {}

        def timed(name, fn):
            t, c = time.perf_counter(), time.process_time()
            fn()
            runs[name] = min(runs.get(name, float("inf")), time.perf_counter() - t)
            cpu[name] = min(cpu.get(name, float("inf")), time.process_time() - c)
        for _ in range(max(1, args.repeat)):
            timed("embed", lambda: embed(man, os.path.join(d, "emb.h5"), batch_size=2, **common))
            for name, kw in (("gradcam (default: table)", dict()),
                             ("gradcam + NIfTI maps", dict(maps=os.path.join(d, "maps"))),
                             ("gradcam + --deletion", dict(deletion=True))):
                timed(name, lambda kw=kw: saliency_cohort(man, "t2,dwi,adc", "gland", ck, os.path.join(d, "s.csv"),
                                                          methods="gradcam", force=True, **kw, **common))
    n = args.cases
    print(f"{n} cases, atto, crop {args.crop} at {args.spacing} mm, CPU ({torch.get_num_threads()} threads), "
          f"fastest of {max(1, args.repeat)}")
    print("wall: seconds on the clock; CPU: this process's CPU seconds (all its threads), which the other "
          "jobs of a shared machine inflate far less")
    print(f"{'run':28s} {'wall s/case':>11s} {'x embed':>8s} {'CPU s/case':>11s} {'x embed':>8s}")
    for name, s in runs.items():
        print(f"{name:28s} {s / n:11.3f} {s / runs['embed']:8.2f} {cpu[name] / n:11.3f} "
              f"{cpu[name] / cpu['embed']:8.2f}")


if __name__ == "__main__":
    main()
