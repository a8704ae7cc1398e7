"""The scored model: finetune checkpoints of each task, TorchScript, the output a map explains."""

import numpy as np
import pytest
import torch

from radlens_cli.saliency import methods as M
from radlens_cli.saliency.model import LayerSite, Scorer, load_scored
from tests.saliency.models import tiny_classifier, write_finetuned

torch.set_num_threads(1)


def x_and_mask(seed=0):
    x = torch.randn(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(seed))
    mask = np.zeros((16, 32, 32), np.uint8)
    mask[4:12, 8:24, 8:24] = 1
    return x, mask


@pytest.mark.parametrize("task", ["classify", "regress", "segment"])
def test_finetune_checkpoint_output_and_last_stage(tmp_path, task):
    enc, head = write_finetuned(tmp_path / "ft.pt", task)
    sm = load_scored(str(tmp_path / "ft.pt"))
    assert sm.task == task and sm.source == "radlens"
    x, mask = x_and_mask()
    site = LayerSite(sm.model, None, x)
    assert site.name == "encoder.stages.3"
    scorer = Scorer(sm.model, sm.task)
    rec = scorer.prepare(x, mask)
    with torch.no_grad():
        if task == "segment":
            out = head(enc.forward_features(x), out_size=x.shape[2:])
            want, idx = float(out[0, 0][torch.from_numpy(mask) > 0].mean()), 0
        else:
            out = head(enc(x))
            idx = int(out[0].argmax()) if task == "classify" else 0
            want = float(out[0, idx] if task == "classify" else out.reshape(-1)[0])
    assert rec["output_index"] == idx and rec["output"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    cam = M.gradcam(scorer, x, site.module)
    assert cam.shape == (16, 32, 32) and np.isfinite(cam).all()


def test_torchscript_gradcam_equals_the_eager_model(tmp_path):
    model = tiny_classifier()
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    x, mask = x_and_mask(1)
    from radlens_cli.saliency.model import tap_torchscript

    sm = load_scored(str(tmp_path / "m.ts"))
    assert tap_torchscript(sm, "conv2", x) == "conv2"
    site = LayerSite(sm.model, "tap", x)
    ts_scorer = Scorer(sm.model)
    ts_scorer.prepare(x, mask)
    eager = Scorer(model)
    eager.prepare(x, mask)
    for method in ("gradcam", "gradcampp", "eigencam"):
        a = M.saliency_map(method, ts_scorer, x, site.module)
        b = M.saliency_map(method, eager, x, model.conv2)
        assert np.allclose(a, b, atol=1e-5), method


def test_encoder_without_head_is_refused(tmp_path):
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    save_radlens_checkpoint(str(tmp_path / "e.pt"), build_encoder("atto", 3), "atto", 3, None)
    with pytest.raises(Exception, match="without a head"):
        load_scored(str(tmp_path / "e.pt"))
