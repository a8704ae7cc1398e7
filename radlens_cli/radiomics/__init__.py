"""PyRadiomics wrapping: feature-name parsing, per-(case, modality) extraction in physical
space, the process pool and cache, and merging of sharded runs.

`names` is light (numpy only); the other modules import SimpleITK/PyRadiomics lazily.
"""

from radlens_cli.radiomics.names import column_meta, parse_column

__all__ = ["column_meta", "parse_column"]
