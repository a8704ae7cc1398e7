"""Encoders: the ProFound-compatible 3D ConvNeXt-V2, checkpoint loading, preprocessing.

Modules import torch at module level; import them only inside commands that need them,
so `radlens --help` stays instant.
"""
