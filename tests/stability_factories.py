"""A `package.module:factory` encoder for the stability tests: a fixed bank of zero-mean
random 3x3x3 filters at two scales, rectified and averaged over the box. Its embeddings
carry local texture (filter energies) and intensity, so decoders on them have something
to decode on the phantom cohort (a randomly initialised ConvNeXt on a small box does
not: R^2 near 0 for every family)."""

import torch


class TextureBank(torch.nn.Module):
    def __init__(self, in_chans=2, filters=12, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(filters * in_chans, 1, 3, 3, 3, generator=g)
        w = w - w.mean(dim=(2, 3, 4), keepdim=True)  # zero mean: a texture (not intensity) detector
        self.register_buffer("weight", w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1))
        self.in_chans = in_chans

    def forward(self, x):
        feats = [x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))]
        for scale in (1, 2):
            v = x if scale == 1 else torch.nn.functional.avg_pool3d(x, 2)
            r = torch.nn.functional.conv3d(v, self.weight, groups=self.in_chans)
            feats += [r.abs().mean(dim=(2, 3, 4)), (r ** 2).mean(dim=(2, 3, 4)).sqrt(),
                      torch.relu(r).mean(dim=(2, 3, 4))]
        return torch.cat(feats, dim=1)


def texture_bank():
    return TextureBank().eval()
