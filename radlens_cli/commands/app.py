"""The one typer `app` and the command decorator that maps errors to exit codes (the shared
options are declared in commands/options.py)."""

from __future__ import annotations

import functools
import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from radlens_cli import log, provenance
from radlens_cli.errors import (EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, ParameterError, RadlensError,
                                Terminated)
from radlens_cli.io import files

try:  # typer >= 0.26 vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer with click
    import click.exceptions as click_exc

PIPELINE = """\
Radiomic lens on what fine-tuning changed in an encoder.

Pipeline, in order (each step reads and writes files; `-` is stdin/stdout):

\b
  synth              phantom mpMRI cohort -> cohort.csv (try radlens without data)
  perturb            cohort.csv -> perturbed / negative-control copy (stability)
  extract-radiomics  cohort.csv -> radiomics.h5
  import-pyradiomics PyRadiomics batch CSVs -> radiomics.h5
  merge              parts of a SLURM array run -> radiomics.h5 / emb.h5
  init-encoder       random encoder (the null baseline) -> random.pt
  finetune           cohort.csv + pre.pt -> ft.pt
  embed              cohort.csv + encoder -> emb_pre.h5 / emb_ft.h5
  layers             encoder -> the layers embed --layer takes, with shapes
  fit-share          emb_pre.h5 + radiomics.h5 -> share.h5
  decode             share.h5 + emb.h5 + radiomics.h5 -> dec_pre.h5 / dec_ft.h5
  compare            dec_pre.h5 dec_ft.h5 -> delta.csv  (decodability change, dr2)
  stats              dec_pre.h5 dec_ft.h5 -> table.csv  (the paper's Table 1)
  correlate          emb.h5 + radiomics.h5 -> corr.h5   (Rad4XCNN map)
  correlate-summary  corr_pre.h5 corr_ft.h5 -> summary.csv
  cka                emb_pre.h5 emb_ft.h5 -> CKA        (representation change)
  stability          radiomics of replicates -> icc.csv (ICC per feature)
  probe              tables + cohort.csv -> probe.csv   (accuracy kept?)
  saliency           cohort.csv + ft.pt -> maps/, saliency.csv (where; concept maps)
  report             everything above -> report.html
  info               what a radlens file holds and how it was made

\b
Exit codes: 0 ok, 1 data error, 2 usage error, 130 interrupted (Ctrl-C), 143
terminated (SIGTERM). A run with failed cases exits 1 and writes no output, unless
--keep-going asked for the others.
SLURM array jobs: --parts slurm (sharding is never implied by the environment).
Shell completion: radlens --install-completion (or --show-completion to print it).
"""


def pipeline_commands() -> list[str]:
    """The commands, in the order PIPELINE lists them: the one list of commands. main.py
    imports their modules from it and --help (and the man pages) show them in this order."""
    block = PIPELINE.split("\b\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose")


def hoist_global_flags(args) -> list[str]:
    """`radlens decode ... -q` works like `radlens -q decode ...` (flags before `--` only)."""
    args = list(args)
    front, rest = [], []
    for i, a in enumerate(args):
        if a == "--":
            rest.extend(args[i:])
            break
        (front if a in GLOBAL_FLAGS else rest).append(a)
    return front + rest


def plain_arguments(cmd) -> None:
    """Arguments shown as their metavar (MANIFEST, DEC [DEC ...], PARTS...) in usage and help,
    not typer 0.29's `{manifest}` and `<list[str]>` placeholders."""
    for p in getattr(cmd, "params", ()):
        if p.param_type_name != "argument":
            continue
        meta = p.metavar or p.name.upper()
        shown = meta + ("..." if p.nargs != 1 and not p.metavar else "")
        usage = shown if p.required else f"[{shown}]"
        p._usage_display_name = lambda usage=usage: usage
        p._rich_display_name = lambda shown=shown: shown
        p.display_type_rich = lambda ctx=None: None


class RadlensGroup(TyperGroup):
    """Prints click usage errors as one line `radlens <cmd>: error: ...` (exit 2); lists the
    commands in pipeline order (pipeline_commands), not in the order they were imported."""

    def list_commands(self, ctx):
        order = {name: i for i, name in enumerate(pipeline_commands())}
        return sorted(super().list_commands(ctx), key=lambda n: (order.get(n, len(order)), n))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for cmd in self.commands.values():
            plain_arguments(cmd)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = hoist_global_flags(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args=args, prog_name=prog_name or "radlens", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click_exc.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":
                print(e.format_message())
                code = 0
                if standalone_mode:
                    sys.exit(code)
                return code
            where = e.ctx.command_path if e.ctx is not None else "radlens"
            print(f"{where}: error: {e.format_message()}", file=sys.stderr)
            if e.ctx is not None:
                print(f"Try '{where} --help' for help.", file=sys.stderr)
            code = EXIT_USAGE
        except click_exc.ClickException as e:
            print(f"radlens: error: {e.format_message()}", file=sys.stderr)
            code = e.exit_code
        except typer.Abort:
            print("radlens: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        else:
            code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="radlens", cls=RadlensGroup, help=PIPELINE, no_args_is_help=True,
    rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (`| head` finished)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True  # no real stdout to check (a test runner's): the pipe error was stdout's


def command(name: str, **kwargs):
    """Register a subcommand; errors become one line on stderr and an exit code.

    RadlensError -> its exit code; Ctrl-C -> 130; anything else -> 1 with a one-line
    message (the traceback only with --verbose).
    """

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            files.reset_stdin_spool()  # each command reads its own stdin, also many in one process
            files.CURRENT["command"] = name
            provenance.reset_run()   # a CSV's sidecar holds only what this command declares
            try:
                return fn(*args, **kw)
            except RadlensError as e:
                if log.verbose():
                    traceback.print_exc()
                text = e.flagged() if isinstance(e, ParameterError) else e  # library errors name parameters
                print(f"radlens {name}: error: {text}", file=sys.stderr)
                raise typer.Exit(e.exit_code) from None
            except KeyboardInterrupt as e:
                if isinstance(e, Terminated):
                    print(f"radlens {name}: terminated (SIGTERM)", file=sys.stderr)
                    raise typer.Exit(EXIT_TERMINATED) from None
                print(f"radlens {name}: interrupted", file=sys.stderr)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except (typer.Exit, click_exc.ClickException, typer.Abort):
                raise
            except BrokenPipeError as e:
                if stdout_closed():
                    # `radlens x -o - | head`: end quietly like samtools; later flushes go nowhere
                    try:
                        devnull = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(devnull, sys.stdout.fileno())
                    except (OSError, ValueError):
                        pass
                    raise typer.Exit(1) from None
                # a pipe to an internal process broke (a worker or helper died): say so
                if log.verbose():
                    traceback.print_exc()
                print(f"radlens {name}: error: a pipe to an internal process broke ({e}); a worker or "
                      f"helper process died (out of memory?)", file=sys.stderr)
                raise typer.Exit(1) from None
            except Exception as e:  # noqa: BLE001 - the one place unexpected errors are shown
                if log.verbose():
                    traceback.print_exc()
                    print(f"radlens {name}: error: {type(e).__name__}: {e}", file=sys.stderr)
                else:
                    print(f"radlens {name}: error: {type(e).__name__}: {e} "
                          f"(rerun with --verbose for the traceback)", file=sys.stderr)
                raise typer.Exit(1) from None

        return app.command(name, **kwargs)(wrapper)

    return deco
