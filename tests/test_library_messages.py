"""Library code called from Python names its parameters, not the command line's flags.

The command wrapper (commands/app.py) and log.warn turn the `{name}` fields of a
ParameterError / ParameterMessage into flags; the CLI tests check that side. Here each
library place that used to print a flag is called directly.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch

from radlens_cli import log
from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage
from radlens_cli.io.tables import CaseTable


def _no_flag(text: str) -> None:
    assert "--" not in text, text


def test_parameter_message_is_plain_and_log_warn_shows_the_flag(capsys):
    m = ParameterMessage("{allow_missing}: using 3 case(s)", "allow_missing")
    assert m == "allow_missing: using 3 case(s)" and m.flagged() == "--allow-missing: using 3 case(s)"
    log.warn(m)
    assert capsys.readouterr().err == "radlens: warning: --allow-missing: using 3 case(s)\n"


def test_checkpoint_refusal_names_trust_not_the_flag(tmp_path):
    from radlens_cli.encoders.checkpoints import UnsafeCheckpoint, describe_checkpoint, load_encoder

    path = tmp_path / "odd.pt"
    torch.save({"weight": torch.zeros(2), "note": Fraction(1, 3)}, path)  # needs full unpickling
    with pytest.raises(UnsafeCheckpoint) as e:
        load_encoder(str(path))
    assert "refused" in str(e.value) and "pass trust=True to load it anyway" in str(e.value)
    _no_flag(str(e.value))
    assert e.value.exit_code == EXIT_DATA and "pass --trust-checkpoint to load it anyway" in e.value.flagged()
    with pytest.raises(UnsafeCheckpoint) as e:
        describe_checkpoint(str(path))
    assert "load_encoder(..., trust=True)" in str(e.value)
    _no_flag(str(e.value))


def test_synth_non_empty_folder_names_force(tmp_path):
    from radlens_cli.synth.phantom import check_out_dir

    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ParameterError) as e:
        check_out_dir(str(tmp_path), force=False)
    assert "(use force=True to write into it)" in str(e.value) and e.value.exit_code == EXIT_DATA
    _no_flag(str(e.value))
    assert "(use --force to write into it)" in e.value.flagged()
    check_out_dir(str(tmp_path), force=True)  # allowed


def test_preprocessing_config_warns_through_the_callback_naming_modalities():
    from radlens_cli.encoders.preprocess import preprocessing_config

    heard = []
    cfg = preprocessing_config(["t2", "adc"], None, None, None, None, {"modalities": ["adc", "t2"]},
                               warn=heard.append)
    assert cfg.modalities == ["t2", "adc"] and len(heard) == 1
    assert heard[0].endswith("(channel order matters); modalities gives t2,adc") and "adc,t2" in heard[0]
    _no_flag(heard[0])
    assert "; --modalities gives t2,adc" in heard[0].flagged()
    heard.clear()
    preprocessing_config(["adc", "t2"], None, None, None, None, {"modalities": ["adc", "t2"]}, warn=heard.append)
    assert heard == []


def _tables(n_emb=40, n_rad=43, d=3, m=4, seed=0):
    rng = np.random.default_rng(seed)
    split = np.array((["train"] * 3 + ["val"]) * 20)[:n_emb]
    emb = CaseTable([f"c{i}" for i in range(n_emb)], rng.normal(size=(n_emb, d)),
                    [f"e{j}" for j in range(d)], split=split, path="emb.h5")
    rad = CaseTable([f"c{i}" for i in range(n_rad)], rng.normal(size=(n_rad, m)),
                    [f"original_firstorder_F{j}" for j in range(m)], path="rad.h5")
    return emb, rad


def test_fit_share_warning_names_allow_missing():
    from radlens_cli.lens.steps import fit_share_tables

    emb, rad = _tables()
    heard = []
    fit_share_tables(emb, rad, hidden=2, epochs=1, batch_size=64, allow_missing=True, warn=heard.append)
    said = [w for w in heard if "present in both" in w]
    assert said == ["allow_missing: using the 40 case(s) present in both inputs "
                    "(3 case row(s) present in only one left out)"], heard
    assert said[0].flagged().startswith("--allow-missing: using the 40 case(s)")


def test_align_cases_names_allow_missing():
    from radlens_cli.io.tables import align_cases

    emb, rad = _tables()
    with pytest.raises(ParameterError) as e:
        align_cases(emb, rad)
    assert "3 case(s) only in rad.h5" in str(e.value) and "(use allow_missing=True to take" in str(e.value)
    _no_flag(str(e.value))
    assert e.value.exit_code == EXIT_DATA and "(use --allow-missing to take the intersection)" in e.value.flagged()


def test_merge_names_allow_incomplete():
    from radlens_cli.radiomics.merge import Part, check_parts

    parts = [Part(f"p{i}.h5", _tables(seed=i)[0], {}, None, part={"part_id": i, "num_parts": 3}) for i in (0, 2)]
    parts[1].table.case_id = np.array([f"d{i}" for i in range(parts[1].table.n_cases)], dtype=object)
    with pytest.raises(ParameterError) as e:
        check_parts(parts)
    assert "part(s) 1 of 3 missing (use allow_incomplete=True to merge the 2 given)" in str(e.value)
    _no_flag(str(e.value))
    assert "(use --allow-incomplete to merge the 2 given)" in e.value.flagged()
    assert check_parts(parts, allow_incomplete=True)["missing"] == [1]


def test_different_preprocessing_names_the_callers_parameter():
    from radlens_cli.lens.checks import require_same_preprocessing

    a, b = {"spacing": [1, 1, 2]}, {"spacing": [2, 2, 4]}
    with pytest.raises(ParameterError) as e:
        require_same_preprocessing(a, b, "pre.h5", "ft.h5", allow=False)
    assert "spacing (1,1,2 vs 2,2,4)" in str(e.value)
    assert "(use allow_different_preprocessing=True if this is intended)" in str(e.value)
    _no_flag(str(e.value))
    assert "(use --allow-different-preprocessing if this is intended)" in e.value.flagged()
    heard = []
    require_same_preprocessing(a, b, "pre.h5", "ft.h5", allow=True, warn=heard.append)
    assert len(heard) == 1 and heard[0].endswith("(allowed)")


def test_cka_rbf_limit_names_kernel(monkeypatch):
    from radlens_cli.lens import cka as cka_mod

    monkeypatch.setattr(cka_mod, "RBF_MAX_CASES", 10)
    x = np.random.default_rng(0).normal(size=(11, 2))
    with pytest.raises(ParameterError) as e:
        cka_mod.cka(x, x, kernel="rbf")
    assert "11 cases is over 10 (use kernel='linear', or pass fewer cases)" in str(e.value)
    _no_flag(str(e.value))
    assert "(use --kernel linear, or --split to compare a subset)" in e.value.flagged()


def test_params_label_names_the_mask_spec():
    from radlens_cli.radiomics.params import validate_params

    with pytest.raises(ParameterError) as e:
        validate_params({"setting": {"label": 2}}, "p.yaml")
    assert "p.yaml: setting label: 2" in str(e.value) and "select labels with the mask spec COLUMN:2" in str(e.value)
    _no_flag(str(e.value))
    assert e.value.exit_code == EXIT_DATA and "select labels with --mask COLUMN:2 instead" in e.value.flagged()


def test_no_library_message_names_a_flag():
    """Every error and warning text written in the library (raised, warned, logged) names
    parameters as `{name}` fields, never `--flags`; the report's HTML, which describes a
    command-line run, may name its flags. A ParameterError's `flags=` (how the command line
    shows a parameter) is where flags belong."""
    import ast
    import re

    from tests.conftest import REPO

    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    messages = ("warn", "info", "debug", "warning", "ParameterMessage", "ParameterError", "RadlensError",
                "UsageError")
    files = [p for d in ("lens", "io", "encoders", "radiomics", "report", "synth") for p in (REPO / "radlens_cli" / d).rglob("*.py")]
    files += [REPO / "radlens_cli" / f for f in ("errors.py", "log.py", "workers.py", "devices.py", "provenance.py",
                                                 "names.py")]
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exempt = {id(c) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "flags"
                  for c in ast.walk(n.value)}
        roots = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc is not None]
        roots += [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
            ast.unparse(n.func).split(".")[-1] in messages or ast.unparse(n.func) == "warnings.append")]
        for root in roots:
            for c in ast.walk(root):
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and id(c) not in exempt:
                    found += [f"{path.relative_to(REPO)}:{c.lineno}: {m}" for m in flag.findall(c.value)]
    assert sorted(set(found)) == []
