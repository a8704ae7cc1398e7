"""Issue 7: help that teaches.

Every subcommand's --help has a one-line summary (<= 60 characters), says what it reads and
writes, explains every option (with its default where it has one) and shows at least one
example; every example line parses against the real command (no option that does not
exist), and the cheap ones run as written in a temporary folder. `radlens --help` shows
the pipeline in order and names every command; shell completion is available.
"""

from __future__ import annotations

import json
import re
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer

import radlens_cli.main  # noqa: F401  - registers the subcommands
from radlens_cli.commands.app import PIPELINE, app
from tests.conftest import REPO

GROUP = typer.main.get_command(app)
NAMES = list(GROUP.commands)


def examples(name: str) -> list[str]:
    """The `radlens ...` command lines in a command's help (continuation lines joined)."""
    text = GROUP.commands[name].help or ""
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if buf:
            buf += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                lines.append(buf)
                buf = ""
            continue
        if line.startswith("radlens ") or " -m radlens_cli " in line:
            if line.endswith("\\"):
                buf = line.rstrip("\\").strip()
            else:
                lines.append(line)
    return lines


def segments(line: str) -> list[list[str]]:
    """Pipeline segments of an example, each a token list."""
    return [shlex.split(part) for part in line.split(" | ")]


def radlens_args(tokens: list[str]) -> list[str] | None:
    """Arguments after `radlens` (or `-m radlens_cli`); None for another program."""
    if tokens and tokens[0] == "radlens":
        return tokens[1:]
    if "radlens_cli" in tokens:
        return tokens[tokens.index("radlens_cli") + 1:]
    return None


ALL_EXAMPLES = [(n, ex) for n in NAMES for ex in examples(n)]


# ------------------------------------------------------------------- each command's help

@pytest.mark.parametrize("name", NAMES)
def test_help_page(cli, name):
    cmd = GROUP.commands[name]
    r = cli(name, "--help")
    assert r.exit_code == 0 and r.stdout.startswith(f"Usage: radlens {name}"), r
    doc = (cmd.help or "").strip()
    summary = doc.splitlines()[0]
    assert summary and len(summary) <= 60, summary
    assert len(doc.splitlines()) > 1 and doc.splitlines()[1].strip() == "", "summary must be one line"
    body = doc.split("Examples:")[0][len(summary):].lower()
    # what it reads: each input argument is described; commands without one say it in the text
    inputs = [p for p in cmd.params if isinstance(p, typer.core.TyperArgument)]
    assert all(p.help for p in inputs), [p.name for p in inputs if not p.help]
    if not inputs:
        assert name in ("synth", "init-encoder") or "read" in body, body
    # what it writes: the text says so (or lists the output's columns)
    assert any(w in body for w in ("writ", "print", "columns")), body
    # every option explained; its default shown unless it has none (or it is an off flag)
    for p in cmd.params:
        if p.name == "help":
            continue
        assert p.help, f"{name} {p.opts}: no help"
        if isinstance(p, typer.core.TyperOption) and not p.required and p.default is not None:
            off_flag = p.is_flag and p.default is False and not p.secondary_opts
            if not off_flag:
                assert p.show_default or "default" in p.help.lower(), f"{name} {p.opts}: default not shown"
                if p.show_default is True:
                    assert "[default: " in r.stdout.replace("\n", " ") or "default" in p.help.lower()
    shown = [ln.strip() for ln in r.stdout.splitlines()]
    for raw in doc.split("Examples:")[-1].splitlines():  # not re-wrapped: each line as written
        if raw.strip().startswith("radlens "):
            assert raw.strip() in shown, f"{name}: example re-wrapped in --help (add \\b): {raw.strip()}"
    assert "Examples:" in doc and any(e.split()[1:2] == [name] or f"radlens_cli {name}" in e
                                      for e in examples(name)), f"{name}: no example of itself"


@pytest.mark.parametrize("name,line", [pytest.param(n, e, id=f"{n}-{i}")
                                       for n in NAMES for i, e in enumerate(examples(n))])
def test_example_parses(name, line):
    """Every `radlens ...` segment of an example parses against the real command."""
    for tokens in segments(line):
        args = radlens_args(tokens)
        if args is None:
            continue
        ctx = GROUP.make_context("radlens", list(args), resilient_parsing=False)
        cmd_name, cmd, rest = GROUP.resolve_command(ctx, ctx._protected_args + ctx.args
                                                    if hasattr(ctx, "_protected_args") else ctx.protected_args + ctx.args)
        assert cmd is not None, line
        sub = cmd.make_context(cmd_name, list(rest), parent=ctx, resilient_parsing=False)
        assert not sub.args, f"{line}: unexpected extra arguments {sub.args}"


# ------------------------------------------------------------------- examples run as written

def _rad_table(path, n, seed):
    rng = np.random.default_rng(seed)
    cols = [f"{m}/{it}_{fam}_F{k}" for m in ("t2", "adc") for it in ("original", "wavelet-LLH")
            for fam in ("firstorder", "glcm") for k in range(2)]
    _h5_table(path, n, rng.normal(size=(n, len(cols))), cols, meta=True)


def _h5_table(path, n, vals, cols, meta=False):
    from radlens_cli.io.tables import CaseTable, write_table

    ids = np.array([f"case{i:03d}" for i in range(n)], dtype=object)
    split = np.array((["train"] * 7 + ["val"] + ["test"] * 2) * (n // 10 + 1), dtype=object)[:n]
    cm = {}
    if meta:
        parts = [c.split("/", 1) for c in cols]
        cm = {"modality": np.array([m for m, _ in parts], dtype=object),
              "image_type": np.array([r.split("_")[0] for _, r in parts], dtype=object),
              "family": np.array([r.split("_")[1] for _, r in parts], dtype=object),
              "feature": np.array([r.split("_", 2)[2] for _, r in parts], dtype=object)}
    write_table(CaseTable(ids, vals, cols, split, cm), str(path))


# Examples not run: heavy (a big architecture, the full sweep grid, 120 phantoms, GPUs,
# torchrun, a real ProFound checkpoint) or needing data a test cannot have. They still parse.
HEAVY = ("--sweep", "fit-share ", "convnextv2_tiny", "--arch tiny", "profound.pt", "torchrun", "--cuda", "cuda",
         "--cases 120", "radiomic-lens.yaml", "--figures", "finetune ", "embed ", "extract-radiomics ")
RUN_ORDER = ["synth", "init-encoder", "merge", "fit-share", "decode", "compare", "stats", "correlate",
             "correlate-summary", "cka", "probe", "report", "info"]
RUNNABLE = [pytest.param(n, e, id=f"{n}-{i}") for n in RUN_ORDER if n in GROUP.commands
            for i, e in enumerate(examples(n)) if not any(h in e + " " for h in HEAVY)
            # the lens files exist only in a build with the lens commands
            and ("fit-share" in GROUP.commands or not any(x in e for x in ("share.h5", "dec_", "delta.csv")))]


OUTPUT_FLAGS = ("-o", "--output", "--pairs", "--explain", "--summary", "--sweep-scores")


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    """A folder holding the files the examples name (emb_pre.h5, radiomics.h5, parts...)."""
    from typer.testing import CliRunner

    d = tmp_path_factory.mktemp("examples")
    n = 40
    _rad_table(d / "radiomics.h5", n, 1)
    for name, seed in (("emb_pre.h5", 2), ("emb_ft.h5", 3)):
        _h5_table(d / name, n, np.random.default_rng(seed).normal(size=(n, 8)), [f"emb_{j}" for j in range(8)])
    shutil.copy(d / "emb_pre.h5", d / "emb.h5")
    rng = np.random.default_rng(4)  # probe's targets
    (d / "cohort.csv").write_text("case_id,pirads,volume_ml\n" + "".join(
        f"case{i:03d},{1 + i % 5},{rng.uniform(20, 80):.2f}\n" for i in range(n)))
    # extract-radiomics parts of a 3-part run (merge's examples)
    run = CliRunner()
    r = run.invoke(app, ["synth", "-o", str(d / "phantom_tiny"), "--cases", "3", "--size", "16,16,6",
                         "--spacing", "1,1,2"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    if "fit-share" in GROUP.commands:  # fit-share's own examples train 200 epochs: too slow here
        r = run.invoke(app, ["fit-share", str(d / "emb_pre.h5"), str(d / "radiomics.h5"), "-o", str(d / "share.h5"),
                             "--epochs", "3", "--hidden", "6", "--device", "cpu"], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    m = d / "merge"  # merge's examples run here: their output, radiomics.h5, must not clash
    (m / "parts").mkdir(parents=True)
    for i in range(3):
        r = run.invoke(app, ["extract-radiomics", str(d / "phantom_tiny" / "cohort.csv"), "--modalities", "t2",
                             "--mask", "gland", "--params", "quick",
                             "--part-id", str(i), "--num-parts", "3", "-o", str(m / f"part{i}.h5")],
                       catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        shutil.copy(m / f"part{i}.h5", m / "parts" / f"radiomics-{i}.h5")
    return d




@pytest.mark.parametrize("name,line", RUNNABLE)
def test_example_runs(cli, example_dir, monkeypatch, name, line):
    """The cheap examples, run as written (in order: later ones read earlier outputs)."""
    import glob

    monkeypatch.chdir(example_dir / "merge" if name == "merge" else example_dir)
    # as in a folder holding only its inputs: an earlier example may have written the same output
    for tokens in segments(line):
        args = radlens_args(tokens) or []
        for flag in OUTPUT_FLAGS:
            if flag in args and args[args.index(flag) + 1] != "-" and os.path.isfile(args[args.index(flag) + 1]):
                os.unlink(args[args.index(flag) + 1])
    stdout = None
    for tokens in segments(line):
        args = radlens_args(tokens)
        if args is None:
            assert tokens[:3] == ["python", "-m", "json.tool"], line
            json.loads(stdout)
            continue
        args = [x for a in args for x in (sorted(glob.glob(a)) if "*" in a else [a])]
        r = cli(*args, input=stdout)
        assert r.exit_code == 0, (line, r)
        stdout = r.stdout_bytes
    for tokens in segments(line):
        args = radlens_args(tokens) or []
        for flag in OUTPUT_FLAGS:
            if flag in args and args[args.index(flag) + 1] != "-":
                assert os.path.exists(args[args.index(flag) + 1]), (line, flag)


# ------------------------------------------------------------------- radlens --help

def test_top_level_help_shows_the_pipeline(cli):
    r = cli("--help")
    assert r.exit_code == 0, r
    text = r.stdout
    pipeline = text.split("Exit codes:")[0]
    starts = {}
    for name in NAMES:  # every command has its line in the pipeline text
        m = re.search(rf"^\s+{re.escape(name)}\s", pipeline, re.M)
        assert m, f"{name} missing from the pipeline in radlens --help"
        starts[name] = m.start()
    chain = [c for c in ("synth", "extract-radiomics", "merge", "init-encoder", "finetune", "embed", "fit-share",
                         "decode", "compare", "stats", "report") if c in starts]
    assert [starts[c] for c in chain] == sorted(starts[c] for c in chain), chain
    assert "Exit codes: 0 ok, 1 data error, 2 usage error" in text
    assert PIPELINE.splitlines()[0] in text
    # the command list, each with its one-line summary
    listing = text.split("Commands:")[1]
    for name in NAMES:
        assert f"  {name} " in listing, name


def test_command_list_summaries_are_not_cut(monkeypatch):
    """On an 80-column terminal `radlens --help` lists every summary whole (no `...`)."""
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "80")
    out = CliRunner().invoke(app, ["--help"], terminal_width=80).stdout
    listing = out.split("Commands:")[1]
    for name in NAMES:
        summary = (GROUP.commands[name].help or "").strip().splitlines()[0]
        assert f"{name}" in listing and summary in listing, f"{name}: summary cut in the list: {summary!r}"


def test_show_completion_bash():
    """`radlens --show-completion` run from bash prints bash's completion script (typer
    detects the shell from the process tree); `_RADLENS_COMPLETE=source_bash radlens` prints
    it wherever the shell cannot be detected."""
    env = dict(os.environ, PYTHONPATH=str(REPO), SHELL="/bin/bash")
    py = shlex.quote(sys.executable)
    for cmd, extra in ((f"{py} -m radlens_cli --show-completion; true", {}),
                       (f"{py} -m radlens_cli", {"_RADLENS_COMPLETE": "source_bash"})):
        out = subprocess.run(["bash", "-c", cmd], env=dict(env, **extra), capture_output=True, text=True,
                             timeout=60, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert "complete -o default -F _radlens_completion radlens" in out.stdout, (cmd, out.stdout, out.stderr)
        assert "_RADLENS_COMPLETE=complete_bash" in out.stdout


def test_completion_completes_commands_and_options():
    """What the installed script asks: the real program answers with commands and options."""
    env = dict(os.environ, _RADLENS_COMPLETE="complete_bash", PYTHONPATH=str(REPO))
    for words, cword, want in (("radlens extract-r", "1", "extract-radiomics"), ("radlens embed --la", "2", "--layer")):
        out = subprocess.run([sys.executable, "-m", "radlens_cli"], env=dict(env, COMP_WORDS=words, COMP_CWORD=cword),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and want in out.stdout.split(), (words, out.stdout, out.stderr)


def test_pipeline_constant_is_the_top_level_help():
    assert app.info.help == PIPELINE


def test_commands_are_listed_in_pipeline_order_and_every_one_is_in_the_pipeline():
    """PIPELINE (the top-level --help text) is the one list of commands: main.py imports
    what it lists, and --help shows the commands in its order, not in import order."""
    import typer.main

    from radlens_cli.commands.app import pipeline_commands
    from radlens_cli.main import COMMAND_MODULES

    group = typer.main.get_command(app)
    listed = group.list_commands(None)
    assert set(listed) == set(pipeline_commands()) == set(group.commands)
    assert listed == pipeline_commands()
    assert COMMAND_MODULES == [n.replace("-", "_") for n in pipeline_commands()]
    from typer.testing import CliRunner

    text = CliRunner().invoke(app, ["--help"]).output.split("Commands:")[1]
    shown = [line.split()[0] for line in text.splitlines() if line.startswith("  ") and line.split()]
    assert shown == pipeline_commands()
