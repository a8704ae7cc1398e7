"""PyRadiomics wrapping: feature-name parsing, per-(case, modality) extraction in physical
space, the process pool and cache, and merging of sharded runs.

`names` is light (numpy only); the other modules import SimpleITK/PyRadiomics lazily.
"""

from radlens_cli.names import parse_column, parse_column_names

__all__ = ["parse_column_names", "parse_column"]
