"""Encoders: the ProFound-compatible 3D ConvNeXt-V2, checkpoint loading, preprocessing.

Modules import torch at module level; import them only inside commands that need them,
so `radlens --help` stays instant.

From Python (docs/python.md): `embed_cohort(manifest, modalities, mask, encoder)` is what
`radlens embed` runs (encoders/embedding.py); it returns a CohortEmbedding (`.table`: the
case table, `.failures`, `.params`). `encoders.training.finetune` is `radlens finetune`'s.
Both load torch when first asked for, not when this package is imported.
"""

__all__ = ["CohortEmbedding", "embed_cohort"]


def __getattr__(name):
    if name in __all__:
        from radlens_cli.encoders import embedding  # heavy: loads torch, only when asked for
        return getattr(embedding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
