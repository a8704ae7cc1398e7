"""File I/O shared by every command: file formats, case tables, manifests, atomic outputs."""

from radlens_cli.io.files import atomic_output, check_output, input_path
from radlens_cli.io.formats import open_h5, read_h5_attrs, write_h5
from radlens_cli.io.manifest import Manifest, derive_split, parse_mask_spec, read_manifest
from radlens_cli.io.tables import CaseTable, align_cases, read_table, write_table

__all__ = ["atomic_output", "input_path", "check_output", "CaseTable", "read_table",
           "write_table", "align_cases", "read_h5_attrs", "open_h5", "write_h5",
           "Manifest", "read_manifest", "parse_mask_spec", "derive_split"]
