"""Saliency cost: `saliency --methods gradcam` on every case vs `embed` of the same cases, side by side.

    python benchmarks/saliency.py                 # the example cohort (synth 80 cases, 64x64x16), atto, CPU
    python benchmarks/saliency.py --cases 20      # quicker

Both run end to end from the manifest (reading, resampling, normalisation, the model), each
as a `radlens` command in its own process (start-up included in both), with
the built-in atto encoder; saliency uses a finetune-style checkpoint (the same encoder with a
classification head). Printed: seconds per case of embed, of Grad-CAM alone (table only, no
deletion), of Grad-CAM with its deletion curve, and with the NIfTI maps written; each as a
ratio to embed. The issue's target: Grad-CAM for all cases at most ~3x embed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    from radlens_cli.synth.phantom import write_cohort

    def radlens(*args):  # the command as users run it: saliency has no library call yet (issue 24)
        subprocess.run([sys.executable, "-m", "radlens_cli", "-q", *args], check=True)

    with tempfile.TemporaryDirectory() as d:
        write_cohort(os.path.join(d, "cohort"), cases=args.cases, seed=0, size=(64, 64, 16), spacing=(0.5, 0.5, 3))
        man = os.path.join(d, "cohort", "cohort.csv")
        ck = os.path.join(d, "ft.pt")
        finetune_style_checkpoint(ck)
        common = ["--spacing", args.spacing, "--crop", args.crop, "--device", "cpu", "--force"]
        runs = {}
        t = time.perf_counter()
        radlens("embed", man, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder", ck,
                "-o", os.path.join(d, "emb.h5"), "--batch-size", "2", *common)
        runs["embed"] = time.perf_counter() - t
        for name, kw in (("gradcam, table only", ["--no-deletion"]),
                         ("gradcam + deletion_auc", []),
                         ("gradcam + deletion + NIfTI maps", ["--maps", os.path.join(d, "maps")])):
            t = time.perf_counter()
            radlens("saliency", man, "--modalities", "t2,dwi,adc", "--mask", "gland", "--encoder", ck,
                    "-o", os.path.join(d, "s.csv"), "--methods", "gradcam", *kw, *common)
            runs[name] = time.perf_counter() - t
    n = args.cases
    print(f"{n} cases, atto, crop {args.crop} at {args.spacing} mm, CPU ({torch.get_num_threads()} threads)")
    print(f"{'run':34s} {'s/case':>8s} {'x embed':>8s}")
    for name, s in runs.items():
        print(f"{name:34s} {s / n:8.3f} {s / runs['embed']:8.2f}")


if __name__ == "__main__":
    main()
