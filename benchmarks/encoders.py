"""Encoder throughput: end-to-end `embed` / `finetune` vs the model alone, in one run.

    python benchmarks/encoders.py            # ProFound-tiny, 224,224,64 (x,y,z) box, CUDA + bf16
    python benchmarks/encoders.py --small    # atto, tiny crop, CPU-friendly (runs anywhere)
    python benchmarks/encoders.py --small --device cpu --cases 2 --steps 1 --jobs 1 --threads 1   # smoke run

Prints, side by side with their ratio:
- embed end to end (manifest -> NIfTI reading, resampling, normalisation in DataLoader
  workers, forward, case table written) without a cache, while filling --cache-dir, and
  from a warm preprocessing cache, vs the model-only
  forward pass on a fixed batch already on the device (inference mode, bf16 autocast on CUDA);
- finetune end to end (`finetune(..., max_steps=N)`: preprocessed-cache loader,
  augmentation, train steps) vs the model-only train step on a fixed batch
  (`radlens_cli.encoders.training.benchmark.train_step_throughput`: forward, loss, backward, AdamW).
The issue's reference for the model alone (bf16, H100): ~112 volumes/s forward, ~23 training.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from radlens_cli.encoders.training.benchmark import timed_throughput  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")


def write_cohort(folder: str, n: int, t2_size=(384, 384, 24), seed: int = 0) -> str:
    """n synthetic cases shaped like scanner output: T2 0.5x0.5x3 mm, DWI/ADC 2x2x3 mm on a
    smaller field of view, gland mask on the T2 grid, a 4-class target."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    rows = ["case_id,t2,dwi,adc,gland,grade,split"]
    nx, ny, nz = t2_size
    zz, yy, xx = np.mgrid[0:nz, 0:ny, 0:nx].astype(np.float32)
    blob = np.exp(-(((xx - nx / 2) / (nx / 8)) ** 2 + ((yy - ny / 2) / (ny / 9)) ** 2 + ((zz - nz / 2) / (nz / 5)) ** 2))
    for i in range(n):
        t2 = (200 + 400 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32)
        img = sitk.GetImageFromArray(t2)
        img.SetSpacing((0.5, 0.5, 3.0))
        img.SetOrigin((-nx / 4, -ny / 4, -nz * 1.5))
        mask = sitk.GetImageFromArray((blob > 0.3).astype(np.uint8))
        mask.CopyInformation(img)
        small = (nx // 6, ny // 6, nz)
        names = {}
        for name, scale in (("dwi", 50.0), ("adc", 1000.0)):
            c = sitk.GetImageFromArray((scale * (1 + rng.random(small[::-1]))).astype(np.float32))
            c.SetSpacing((2.0, 2.0, 3.0))
            c.SetOrigin((-small[0] + 1.0, -small[1] + 1.0, -nz * 1.5))
            names[name] = f"c{i:04d}_{name}.nii.gz"
            sitk.WriteImage(c, os.path.join(folder, names[name]))
        sitk.WriteImage(img, os.path.join(folder, f"c{i:04d}_t2.nii.gz"))
        sitk.WriteImage(mask, os.path.join(folder, f"c{i:04d}_gland.nii.gz"))
        rows.append(f"c{i:04d},c{i:04d}_t2.nii.gz,{names['dwi']},{names['adc']},c{i:04d}_gland.nii.gz,"
                    f"{i % 4},{'val' if i % 8 == 7 else 'train'}")
    path = os.path.join(folder, "cohort.csv")
    with open(path, "w") as fh:
        fh.write("\n".join(rows) + "\n")
    return path


def forward_throughput(model, batch: torch.Tensor, steps: int, device, amp: bool, warmup: int = 2) -> float:
    x = batch.to(device)
    model = model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as embed does

    def one():
        if amp and device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x)
        return model(x)

    with torch.inference_mode():
        return timed_throughput(one, x.shape[0], steps, device, warmup)


def row(name: str, e2e: float, model: float) -> str:
    return f"  {name:<34} {e2e:10.2f} {model:12.2f} {e2e / model:9.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="atto, 16x48x48 crop, small images (CPU-friendly)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--cases", type=int, default=None, help="cases in the synthetic cohort")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None, help="DataLoader workers for embed")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (model-only and finetune)")
    ap.add_argument("--no-finetune", action="store_true", help="embed half only")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads on CPU [default: every core]; 1 keeps a busy machine's contention out")
    args = ap.parse_args(argv)

    from radlens_cli.devices import resolve_device
    from radlens_cli.encoders import embed_cohort
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.io.tables import write_table
    from radlens_cli.encoders.convnextv2 import build_encoder
    from radlens_cli.log import set_verbosity

    set_verbosity(0)
    dev = resolve_device(args.device)
    if args.small:
        arch, crop, spacing, t2_size = "convnextv2_atto", (48, 48, 16), (1.0, 1.0, 2.0), (96, 96, 12)  # crop x,y,z
        cases, bs, steps = args.cases or 12, args.batch_size or 2, args.steps or 4
    else:
        arch, crop, spacing, t2_size = "convnextv2_tiny", (224, 224, 64), (0.5, 0.5, 1.0), (384, 384, 24)
        cases, bs, steps = args.cases or 96, args.batch_size or 8, args.steps or 20
    jobs = args.jobs or max(1, min(8, (os.cpu_count() or 2) - 1))
    amp = dev.type == "cuda"
    if dev.type == "cpu":
        torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    print(f"device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}"
          f"{' (bf16 autocast)' if amp else ' (fp32)'}; {arch}; crop {','.join(map(str, crop))} (x,y,z) at "
          f"{','.join(map(str, spacing))} mm; {cases} cases; batch {bs}; {jobs} loader worker(s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="radlens-bench-") as tmp:
        t0 = time.perf_counter()
        manifest = write_cohort(tmp, cases, t2_size)
        print(f"synthetic cohort written in {time.perf_counter() - t0:.1f} s", flush=True)
        torch.manual_seed(0)
        model = build_encoder(arch, 3)
        enc = os.path.join(tmp, "enc.pt")
        save_radlens_checkpoint(enc, model, arch, 3, None)
        common = dict(spacing=spacing, crop=crop, batch_size=bs, device=str(dev), jobs=jobs)
        cache = os.path.join(tmp, "cache")

        def timed_embed(name, **kw):
            t0 = time.perf_counter()
            res = embed_cohort(manifest, ["t2", "dwi", "adc"], "gland", enc, **common, **kw)
            write_table(res.table, os.path.join(tmp, f"{name}.h5"))  # what `radlens embed` does, less provenance
            return cases / (time.perf_counter() - t0)

        plain = timed_embed("plain")  # no cache: read, resample, normalise, forward, write
        cold = timed_embed("cold", cache_dir=cache)  # the same, writing the float16 cache
        import shutil

        shutil.rmtree(os.path.join(cache, "embeddings"))  # keep volumes, recompute embeddings
        warm = timed_embed("warm", cache_dir=cache)
        batch = torch.randn(bs, 3, *crop[::-1])  # (C, z, y, x)
        fwd = forward_throughput(model, batch, steps, dev, amp)

        print(f"\n  {'volumes/s':<34} {'end-to-end':>10} {'model-only':>12} {'ratio':>9}")
        print(row("embed (no cache)", plain, fwd))
        print(row("embed (filling --cache-dir)", cold, fwd))
        print(row("embed (warm preprocessing cache)", warm, fwd))

        if args.no_finetune:
            print("  finetune: skipped (--no-finetune)")
            return 0
        try:
            from radlens_cli.encoders.training import finetune
            from radlens_cli.encoders.training.benchmark import train_step_throughput
        except ImportError as e:  # the finetune half: encoders/training/
            print(f"  finetune: not available ({e})")
            return 0
        res = finetune(manifest, ["t2", "dwi", "adc"], "gland", enc, "classify", os.path.join(tmp, "ft.pt"),
                       target="grade", epochs=1000, batch_size=bs, seed=0, device=str(dev),
                       spacing=spacing, crop=crop, cache_dir=cache, workers=jobs, max_steps=steps + 2,
                       amp=amp, resume=False)
        ft = res["train_volumes"] / res["train_seconds"]
        train_model = build_encoder(arch, 3)
        step = train_step_throughput(train_model, None, batch, steps, dev, amp=amp)
        print(row("finetune (classify, augmented)", ft, step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
