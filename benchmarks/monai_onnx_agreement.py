"""radlens `embed` of a MONAI network exported to ONNX vs the same network on MONAI's own
preprocessing, per case, for one oblique scan stored with three voxel axis orders.

    python benchmarks/monai_onnx_agreement.py        # needs monai and nibabel (the test extra)

A SegResNet (random weights, seed 0: no weights can be downloaded here) is exported with
torch.onnx.export; radlens embeds the phantom cases through the real CLI with
`--orient RAS --layout xyz --spacing 0.5,0.5,1.5 --crop 48,48,16 --norm-region volume
--layer <a down_layers.2 tensor>`; the reference runs MONAI's LoadImaged, EnsureChannelFirstd,
Orientationd(RAS), Spacingd, NormalizeIntensityd(nonzero) and a crop around the mask, then
the torch network with a hook on down_layers.2, mean-pooled. Prints the cosine similarity
per case, and the same with --orient LPS (x and y flipped). With random weights pooled
features are nearly flip-invariant, so the wrong orientation scores high too; the tensor
level test (tests/encoders/test_monai_agreement.py) is the one that tells orientations apart.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    warnings.simplefilter("ignore")
    try:
        import nibabel  # noqa: F401  (MONAI's LoadImaged reads the NIfTI files with it)
        import onnx
        from monai.networks.nets import SegResNet

        from tests.encoders.test_monai_agreement import CROP, PIXDIM, _monai, _phantom
    except ImportError as e:
        print(f"benchmark: {e}; this benchmark needs monai, onnx and nibabel "
              "(pip install -e '.[test]')", file=sys.stderr)
        return 1
    import torch

    from radlens_cli.io.tables import read_table

    root = pathlib.Path(tempfile.mkdtemp(prefix="radlens-monai-"))
    torch.manual_seed(0)
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=2, init_filters=8).eval()
    model = root / "segresnet.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, *CROP),), str(model), dynamo=False, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    layer = [o for n in onnx.load(str(model)).graph.node for o in n.output if o.startswith("/down_layers.2/")][-1]
    cases, rows = [], ["case_id,t2,mask"]
    for name, perm in (("stored_lps", None), ("stored_ras", ((0, 1, 2), (True, True, False))),
                       ("stored_sagittal", ((2, 0, 1), (False, True, True)))):
        img, mask = _phantom(root, name, perm)
        rows.append(f"{name},{img},{mask}")
        cases.append((name, img, mask))
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")
    feats = {}
    net.down_layers[2].register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
    ref = {}
    for name, img, mask in cases:
        with torch.no_grad():
            net(torch.from_numpy(_monai(img, mask))[None, None].float())
        ref[name] = feats["f"].flatten(2).mean(-1)[0].double().numpy()

    def embed(orient):
        out = root / f"emb_{orient}.h5"
        r = subprocess.run([sys.executable, "-m", "radlens_cli", "embed", str(root / "cohort.csv"), "--modalities", "t2",
                            "--mask", "mask", "--encoder", str(model), "--layer", layer, "--orient", orient,
                            "--layout", "xyz", "--spacing", ",".join(map(str, PIXDIM)), "--crop",
                            ",".join(map(str, CROP)), "--norm-region", "volume", "-o", str(out)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"})
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        t = read_table(str(out))
        return dict(zip(t.case_id, t.values))

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    good, flipped = embed("RAS"), embed("LPS")
    print(f"SegResNet (random, seed 0) as ONNX, layer {layer}, {len(ref[cases[0][0]])} dims")
    print("case               cosine(radlens RAS/xyz, MONAI)   cosine(radlens LPS/xyz, MONAI)")
    for name, _, _ in cases:
        print(f"{name:18s} {cos(good[name], ref[name]):.4f}                           {cos(flipped[name], ref[name]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
