"""PyRadiomics wrapping: feature-name parsing, per-(case, modality) extraction in physical
space, the process pool and cache, and merging of sharded runs.

`names` is light (numpy only); the other modules import SimpleITK/PyRadiomics lazily.

From Python (docs/python.md): `extract_cohort(manifest, modalities, mask, params)` is what
`radlens extract-radiomics` runs; it returns a CohortExtraction (`.table`: the case table,
`.failures`: the failed and skipped (case, modality)).
"""

from radlens_cli.names import parse_column, parse_column_names
from radlens_cli.radiomics.batch import CohortExtraction, Extraction, extract_cohort

__all__ = ["CohortExtraction", "Extraction", "extract_cohort", "parse_column_names", "parse_column"]
