"""Saliency cost: `saliency --methods gradcam` on every case vs `embed` of the same cases, side by side.

    python benchmarks/saliency.py                 # the example cohort (synth 80 cases, 64x64x16), atto, CPU
    python benchmarks/saliency.py --cases 20      # quicker

Both run end to end from the manifest (reading, resampling, normalisation, the model), as
the library calls the commands make (encoders.embed_cohort, saliency.cohort.saliency_cohort), with
the built-in atto encoder; saliency uses a finetune-style checkpoint (the same encoder with a
classification head). Printed: seconds per case of embed, of Grad-CAM alone (table only, no
deletion), of Grad-CAM with its deletion curve, and with the NIfTI maps written; each as a
ratio to embed. The issue's target: Grad-CAM for all cases at most ~3x embed.
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
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from radlens_cli.encoders import embed_cohort
    from radlens_cli.io.tables import write_table
    from radlens_cli.log import set_verbosity
    from radlens_cli.saliency.cohort import saliency_cohort
    from radlens_cli.synth.phantom import write_cohort

    set_verbosity(0)
    crop = tuple(int(v) for v in args.crop.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))

    with tempfile.TemporaryDirectory() as d:
        write_cohort(os.path.join(d, "cohort"), cases=args.cases, seed=0, size=(64, 64, 16), spacing=(0.5, 0.5, 3))
        man = os.path.join(d, "cohort", "cohort.csv")
        ck = os.path.join(d, "ft.pt")
        finetune_style_checkpoint(ck)
        common = dict(spacing=spacing, crop=crop, device="cpu")
        runs = {}
        t = time.perf_counter()
        emb = embed_cohort(man, ["t2", "dwi", "adc"], "gland", ck, batch_size=2, **common)
        write_table(emb.table, os.path.join(d, "emb.h5"))  # what `radlens embed` does, less provenance
        runs["embed"] = time.perf_counter() - t
        for name, kw in (("gradcam, table only", dict(deletion=False)),
                         ("gradcam + deletion_auc", dict()),
                         ("gradcam + deletion + NIfTI maps", dict(maps=os.path.join(d, "maps")))):
            t = time.perf_counter()
            saliency_cohort(man, "t2,dwi,adc", "gland", ck, os.path.join(d, "s.csv"), methods="gradcam", force=True,
                            **kw, **common)
            runs[name] = time.perf_counter() - t
    n = args.cases
    print(f"{n} cases, atto, crop {args.crop} at {args.spacing} mm, CPU ({torch.get_num_threads()} threads)")
    print(f"{'run':34s} {'s/case':>8s} {'x embed':>8s}")
    for name, s in runs.items():
        print(f"{name:34s} {s / n:8.3f} {s / runs['embed']:8.2f}")


if __name__ == "__main__":
    main()
