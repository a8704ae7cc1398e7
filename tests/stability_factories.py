"""`package.module:factory` encoders for the stability tests: a fixed bank of zero-mean
random filters at two scales, rectified and averaged over the box. Their embeddings carry
local texture (filter energies) and intensity, so decoders on them have something to
decode on the phantom cohort (a randomly initialised ConvNeXt on a small box does not:
R^2 near 0 for every family).

- `texture_bank`: 3 x 3 x 3 filters, scales 1 and 2 (average-pooled 2 x 2 x 2);
- `texture_bank_2d`: in-plane 1 x 3 x 3 filters, scales 1 and 2 (pooled 2 x 2 in-plane),
  as a 2-D encoder reads 3 mm slices: across 3 mm slices a 3-voxel filter sees the
  gland's top and bottom edges more than its texture."""

import torch


class TextureBank(torch.nn.Module):
    def __init__(self, in_chans=2, filters=12, seed=0, planar=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(filters * in_chans, 1, 1 if planar else 3, 3, 3, generator=g)
        w = w - w.mean(dim=(2, 3, 4), keepdim=True)  # zero mean: a texture (not intensity) detector
        self.register_buffer("weight", w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1))
        self.in_chans = in_chans
        self.pool = (1, 2, 2) if planar else 2

    def forward(self, x):
        feats = [x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))]
        for scale in (1, 2):
            v = x if scale == 1 else torch.nn.functional.avg_pool3d(x, self.pool)
            r = torch.nn.functional.conv3d(v, self.weight, groups=self.in_chans)
            feats += [r.abs().mean(dim=(2, 3, 4)), (r ** 2).mean(dim=(2, 3, 4)).sqrt(),
                      torch.relu(r).mean(dim=(2, 3, 4))]
        return torch.cat(feats, dim=1)


def texture_bank():
    return TextureBank().eval()


def texture_bank_2d():
    return TextureBank(planar=True).eval()
