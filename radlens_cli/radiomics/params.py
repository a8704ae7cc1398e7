"""PyRadiomics parameter files: named presets, read, validate against PyRadiomics' own schema, hash."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import warnings

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError


def quiet_pyradiomics() -> None:
    """PyRadiomics and pykwalify log to stderr by default; radlens reports errors itself."""
    import pykwalify.core
    import radiomics

    radiomics.setVerbosity(logging.CRITICAL + 1)
    logging.getLogger("radiomics").setLevel(logging.CRITICAL + 1)
    pykwalify.core.log.setLevel(logging.CRITICAL + 1)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL + 1)


def _schema_message(e: Exception) -> str:
    text = str(e).strip().strip("<>")
    lines = [ln.strip()[2:].strip() if ln.strip().startswith("- ") else ln.strip() for ln in text.splitlines()]
    detail = [ln for ln in lines[1:] if ln] if len(lines) > 1 else lines
    msg = "; ".join(detail)
    return msg.replace(": Path: '/'", "").rstrip(".") or text


def validate_params(params: dict, where: str) -> dict:
    """Check a parameter dict the way PyRadiomics does (pykwalify schema + class/type names).

    Returns the dict radlens uses: the mask radlens passes is binary, so `label` is 1.
    """
    from radiomics import featureextractor

    quiet_pyradiomics()
    if not isinstance(params, dict):
        raise RadlensError(f"{where}: a PyRadiomics parameter file must be a YAML mapping "
                           f"(imageType / featureClass / setting)")
    setting = params.get("setting") or {}
    if isinstance(setting, dict) and setting.get("label", 1) != 1:
        raise ParameterError(f"{where}: setting label: {setting['label']} is not used by radlens; "
                             f"select labels with {{mask}} COLUMN:{setting['label']} instead", "mask",
                             exit_code=EXIT_DATA, plain={"mask": "the mask spec"})
    try:
        with warnings.catch_warnings():  # pykwalify loads PyRadiomics' schema hooks with load_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    except Exception as e:  # pykwalify SchemaError, ValueError for unknown classes/features
        name = type(e).__name__
        reason = _schema_message(e) if name == "SchemaError" else str(e).splitlines()[0]
        raise RadlensError(f"{where}: rejected by PyRadiomics' parameter schema: {reason}") from None
    out = copy.deepcopy(params)
    out.setdefault("setting", {})
    if out["setting"] is None:
        out["setting"] = {}
    out["setting"]["label"] = 1
    return out


PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
# name -> one line saying what it is; the file is presets/<name>.yaml (package data)
PRESETS = {
    "paper": "the Radiomic Lens paper's configuration: Original + Wavelet, six families, "
             "0.5x0.5x1.0 mm, 837 features per modality",
    "quick": "Original image only, the same six families, 1x1x2 mm: 93 features per modality, "
             "about 10x faster",
}


def resolve_params(value: str) -> str:
    """The parameter file a value names: an existing file is that file, else a preset name."""
    if os.path.exists(value) or value not in PRESETS:
        return value
    return os.path.join(PRESET_DIR, f"{value}.yaml")


def preset_text(name: str) -> str:
    """The YAML text of a preset, to print or start one's own configuration from."""
    if name not in PRESETS:
        raise RadlensError(f"no preset named {name!r}; presets: {', '.join(PRESETS)}")
    with open(os.path.join(PRESET_DIR, f"{name}.yaml"), encoding="utf-8") as fh:
        return fh.read()


def load_params(path: str) -> dict:
    """Read and validate a PyRadiomics YAML/JSON parameter file or a preset name."""
    import yaml

    path = resolve_params(path)
    if not os.path.exists(path):
        if os.sep not in path and "/" not in path and not os.path.splitext(path)[1]:
            # a bare word is a preset name mistyped, not a missing file: a usage error (exit 2)
            import difflib

            near = difflib.get_close_matches(path, PRESETS, n=1)
            raise ParameterError(f"{{params}} {path}: no such preset or file"
                                 + (f"; did you mean {near[0]}?" if near else "")
                                 + f" (presets: {', '.join(PRESETS)}; or a YAML/JSON file)", "params")
        raise RadlensError(f"params file not found: {path} (nor a preset: {', '.join(PRESETS)})")
    if os.path.isdir(path):
        raise RadlensError(f"params is a folder, not a file: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            params = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0]
        raise RadlensError(f"{path}: not valid YAML: {first}") from None
    if params is None:
        params = {}
    return validate_params(params, path)


def params_hash(params: dict) -> str:
    """sha256 of the parameters' canonical JSON (formatting of the YAML does not matter)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def pyradiomics_version() -> str:
    import radiomics

    return str(getattr(radiomics, "__version__", "unknown"))
