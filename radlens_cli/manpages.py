"""Man pages generated from the typer app: the same text as `--help`.

click-man does not understand typer >= 0.26 (vendored click), so this is a small roff
writer over `typer.main.get_command(app)`. Run `python -m radlens_cli.manpages man/`;
tests/test_manpages.py fails when the committed pages are stale.
"""

from __future__ import annotations

import os
import sys

from radlens_cli import __version__
from radlens_cli.main import app

DATE = "2026"


def _esc(text: str) -> str:
    out = []
    for line in text.replace("\\", "\\e").split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(_breakable(line.replace("-", "\\-")))
    return "\n".join(out)


def _breakable(line: str) -> str:
    """Long words (a column list `a,b,c,...`) get break points after their commas, so troff
    can fill the line instead of warning `cannot adjust line`."""
    words = line.split(" ")
    return " ".join(w.replace(",", ",\\:") if len(w) > 40 else w for w in words)


def _paragraphs(text: str) -> str:
    """Help text to roff: blank lines are paragraphs, indented lines are kept as-is."""
    lines = [ln for ln in text.strip("\n").split("\n") if ln.strip() != "\b"]
    out, in_pre = [], False
    for line in lines:
        if not line.strip():
            if in_pre:
                out.append(".fi")
                in_pre = False
            out.append(".PP")
            continue
        if line.startswith(("  ", "\t", "$ ")):
            if not in_pre:
                out.append(".nf")
                in_pre = True
            out.append(_esc(line))
        else:
            if in_pre:
                out.append(".fi")
                in_pre = False
            out.append(_esc(line))
    if in_pre:
        out.append(".fi")
    return "\n".join(out)


def _params(cmd) -> list[str]:
    out = []
    for p in cmd.params:
        if getattr(p, "hidden", False):
            continue
        if p.param_type_name == "argument":
            continue
        names = ", ".join(p.opts + list(getattr(p, "secondary_opts", [])))
        meta = "" if getattr(p, "is_flag", False) else f" {_metavar(p, cmd)}"
        out.append(".TP")
        out.append(f"\\fB{_esc(names)}\\fR{_esc(meta)}")
        text = (getattr(p, "help", None) or "").strip()
        default = p.default
        if not getattr(p, "is_flag", False):
            if default not in (None, ..., "") and not callable(default):
                text += f" [default: {default}]"
        out.append(_esc(text) if text else "")
    return out


def _metavar(p, cmd) -> str:
    # typer 0.29's vendored click Parameter has no make_metavar; fall back to the type name
    if hasattr(p, "make_metavar"):
        return p.make_metavar(_ctx_for(cmd)) if _needs_ctx(p) else p.make_metavar()
    if getattr(p, "metavar", None):
        return p.metavar
    name = getattr(getattr(p, "type", None), "name", None) or "value"
    return name.upper()


def _needs_ctx(p) -> bool:
    import inspect

    try:
        return "ctx" in inspect.signature(p.make_metavar).parameters
    except (TypeError, ValueError):
        return False


def _ctx_for(cmd):
    try:
        from typer._click import Context
    except ImportError:  # pragma: no cover
        from click import Context
    return Context(cmd)


def _arguments(cmd) -> list[str]:
    out = []
    for p in cmd.params:
        if p.param_type_name != "argument":
            continue
        out.append(".TP")
        out.append(f"\\fI{_esc(p.name.upper())}\\fR")
        out.append(_esc((getattr(p, "help", None) or "").strip()))
    return out


def _synopsis(name: str, cmd) -> str:
    args = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            metavar = p.name.upper()
            if getattr(p, "nargs", 1) == -1:
                metavar += "..."
            args.append(metavar if p.required else f"[{metavar}]")
    return f"\\fB{_esc(name)}\\fR [OPTIONS] {_esc(' '.join(args))}".rstrip()


# Every environment variable radlens reads (a test checks the source against this list), and
# which pages list it: "all", "progress" (commands with a progress bar), "outputs" (commands
# that record provenance), "parts" (commands with --parts), a command name, or "top".
ENVIRONMENT = [
    ("TQDM_DISABLE", "1: no progress bars nor plain progress lines (as -q, but warnings stay).", "progress"),
    ("RADLENS_PROGRESS_SECONDS", "When stderr is not a terminal: the longest time between plain progress "
                                 "lines (default 120; a line also comes every 5 percent, at most one per "
                                 "min(2, this/60) seconds, so a fast loop prints only its final line).", "progress"),
    ("SOURCE_DATE_EPOCH", "Pins the creation time recorded in outputs, so same-seed runs give identical bytes.",
     "outputs"),
    ("SLURM_ARRAY_TASK_ID", "With --parts slurm: this array task; the part is (ID - MIN) / STEP.", "parts"),
    ("SLURM_ARRAY_TASK_MIN", "With --parts slurm: the array's first task id (default 0).", "parts"),
    ("SLURM_ARRAY_TASK_MAX", "With --parts slurm: the array's last task id (checks the range).", "parts"),
    ("SLURM_ARRAY_TASK_STEP", "With --parts slurm: the array's step, e.g. 2 for --array=0-8:2 (default 1).", "parts"),
    ("SLURM_ARRAY_TASK_COUNT", "With --parts slurm: the number of parts. Without --parts nothing is read "
                               "from SLURM: an array task is not a shard unless asked.", "parts"),
    ("WORLD_SIZE, RANK, LOCAL_RANK", "Set by torchrun: finetune trains with DDP over the ranks.", "finetune"),
    ("_RADLENS_COMPLETE", "Shell completion (radlens --install-completion sets it up).", "top"),
    ("RADLENS_TEST_KILL_WORKER", "Test only: CASE[:MODALITY] makes the worker that takes this case kill "
                                 "itself with SIGKILL (once per RADLENS_TEST_KILL_ONCE file), to test "
                                 "recovery from a dead worker.", "extract-radiomics"),
    ("RADLENS_TEST_KILL_ONCE", "Test only: a file created on the first kill; while it exists the hook "
                               "does nothing, so the retry succeeds.", "extract-radiomics"),
    ("RADLENS_FINETUNE_KILL_AT_STEP", "Test only: finetune kills itself at this optimiser step "
                                      "(to test resuming).", "finetune"),
]

# commands whose one library call draws the progress bar (their own module calls no progress())
LIBRARY_PROGRESS = {"extract-radiomics", "embed", "finetune", "saliency"}

# commands that write no file, hence record no provenance
NO_OUTPUT = {"info", "layers"}


def _module_text(cmd) -> str:
    """The source of the module a command's callback lives in ('' when unavailable)."""
    import inspect

    fn = getattr(cmd, "callback", None)
    fn = getattr(fn, "__wrapped__", fn)
    try:
        return inspect.getsource(inspect.getmodule(fn))
    except (TypeError, OSError):
        return ""


def _applies(scope: str, name: str, cmd) -> bool:
    """Whether an ENVIRONMENT entry belongs on the page of command `name` ("radlens": the top page)."""
    if name == "radlens":
        return True
    sub = name.split(" ", 1)[-1]
    opts = {o for p in getattr(cmd, "params", ()) for o in getattr(p, "opts", ())}
    if scope == "all":
        return True
    if scope == "progress":
        return sub in LIBRARY_PROGRESS or "progress(" in _module_text(cmd)
    if scope == "outputs":
        return sub not in NO_OUTPUT
    if scope == "parts":
        return "--parts" in opts
    if scope == "top":
        return False
    return scope == sub


def exit_status(name: str, cmd) -> str:
    """The exit codes this command can give; the --keep-going sentence only where it applies."""
    opts = {o for p in getattr(cmd, "params", ()) for o in getattr(p, "opts", ())}
    keep = "--keep-going" in opts or name == "radlens"
    return ("0 success" + (" (also a --keep-going run that left failed cases out, with a warning)" if keep else "")
            + "; 1 data error" + (", or failed cases without --keep-going (no output written)" if keep else "")
            + "; 2 usage error; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, e.g. scancel or a job's "
              "time limit; temporary files are removed).")


def page(name: str, cmd, summary: str, body: str, see_also: list[str]) -> str:
    title = name.upper().replace(" ", "-")
    parts = [
        f'.TH "{title}" "1" "{DATE}" "radlens {__version__}" "radlens manual"',
        ".ad l",   # ragged right: column lists and flags hold no spaces to stretch
        ".SH NAME",
        f"{_esc(name.replace(' ', '-'))} \\- {_esc(summary)}",
        ".SH SYNOPSIS",
        _synopsis(name, cmd),
    ]
    if body.strip():
        parts += [".SH DESCRIPTION", _paragraphs(body)]
    args = _arguments(cmd)
    if args:
        parts += [".SH ARGUMENTS", *args]
    opts = _params(cmd)
    if opts:
        parts += [".SH OPTIONS", *opts]
    parts += [".SH EXIT STATUS", _esc(exit_status(name, cmd))]
    env = [(var, text) for var, text, scope in ENVIRONMENT if _applies(scope, name, cmd)]
    if env:
        parts += [".SH ENVIRONMENT"]
    for var, text in env:
        parts += [".TP", f"\\fB{_esc(var)}\\fR", _esc(text)]
    if see_also:
        parts += [".SH SEE ALSO", ", ".join(f"\\fB{_esc(s)}\\fR(1)" for s in see_also)]
    return "\n".join(parts) + "\n"


def generate() -> dict[str, str]:
    """File name -> roff text for `radlens.1` and one page per subcommand."""
    import typer.main

    group = typer.main.get_command(app)
    names = list(group.commands)
    pages = {}
    top_help = group.help or ""
    summary, _, body = top_help.partition("\n")
    pages["radlens.1"] = page("radlens", group, summary.strip(), body, [f"radlens-{n}" for n in names])
    # the top page lists subcommands rather than options of subcommands
    sub = [".SH COMMANDS"]
    for n in names:
        c = group.commands[n]
        sub += [".TP", f"\\fB{_esc(n)}\\fR", _esc((c.help or "").strip().split("\n")[0])]
    pages["radlens.1"] = pages["radlens.1"].replace(".SH EXIT STATUS", "\n".join(sub) + "\n.SH EXIT STATUS")
    for n in names:
        c = group.commands[n]
        text = (c.help or "").strip()
        summary, _, body = text.partition("\n")
        pages[f"radlens-{n}.1"] = page(f"radlens {n}", c, summary.strip(), body,
                                       ["radlens"])
    return pages


def write(folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    pages = generate()
    for old in os.listdir(folder):
        if old.endswith(".1") and old not in pages:
            os.unlink(os.path.join(folder, old))
    for fname, text in pages.items():
        with open(os.path.join(folder, fname), "w", encoding="utf-8") as fh:
            fh.write(text)
    return sorted(pages)


if __name__ == "__main__":
    written = write(sys.argv[1] if len(sys.argv) > 1 else "man")
    print(f"wrote {len(written)} man pages", file=sys.stderr)
