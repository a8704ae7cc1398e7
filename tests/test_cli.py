"""The CLI framework: help, version, one-line errors with exit codes, piping, man pages."""

import subprocess
import sys


from radlens_cli.io.tables import write_table
from tests.conftest import REPO, make_table


def test_help_lists_pipeline(cli):
    r = cli("--help")
    assert r.exit_code == 0
    assert "Pipeline, in order" in r.stdout
    pipeline = r.stdout.split("Pipeline, in order")[1]
    import typer.main

    from radlens_cli.main import app

    # the pipeline block names every command of the build, once each
    block = pipeline.split("\n\n")[1]  # the indented lines after the heading, up to a blank line
    listed = [ln.split()[0] for ln in block.splitlines()]
    commands = list(typer.main.get_command(app).commands)
    assert set(listed) == set(commands), (listed, commands)
    assert len(listed) == len(set(listed)) and listed[0] == "synth", listed


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.startswith("radlens ")


def test_usage_error_is_one_line_exit_2(cli):
    r = cli("info", "--nope")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0].startswith("radlens info: error:")
    assert "Traceback" not in r.stderr


def test_data_error_is_one_line_exit_1(cli, tmp_path):
    r = cli("info", str(tmp_path / "missing.h5"))
    assert r.exit_code == 1
    assert r.stderr.strip() == f"radlens info: error: input file not found: {tmp_path / 'missing.h5'}"


def test_info_reads_stdin(cli, tmp_path):
    write_table(make_table(), str(tmp_path / "a.h5"))
    r = cli("info", "-", input=(tmp_path / "a.h5").read_bytes())
    assert r.exit_code == 0, r
    assert "case-table/1" in r.stdout and "values  20x5" in r.stdout


def test_stdin_terminal_refused(tmp_path):
    # a real process with a pty-less but tty-like stdin is hard to fake; check the message path
    from radlens_cli.errors import UsageError
    from radlens_cli.io import files

    class Tty:
        def isatty(self):
            return True

    old = sys.stdin
    sys.stdin = Tty()
    files._SPOOLED.clear()
    try:
        try:
            files.input_path("-", "embeddings")
        except UsageError as e:
            assert "stdin is a terminal" in str(e)
        else:
            raise AssertionError("no error")
    finally:
        sys.stdin = old


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "radlens_cli", "--version"], capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("radlens")


def test_unexpected_exception_is_one_line_without_traceback(cli, monkeypatch):
    import radlens_cli.commands.info as info_mod

    def boom(path):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(info_mod, "info", boom)
    r = cli("info", "x.h5")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        "radlens info: error: ZeroDivisionError: planted (rerun with --verbose for the traceback)"]
    r = cli("--verbose", "info", "x.h5")
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_info_lines_do_not_land_inside_a_progress_bar(monkeypatch):
    """Issue 25: on a terminal, info and warning lines interleaved with the tqdm bar."""
    import io
    import sys

    from tqdm import tqdm

    from radlens_cli import log

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(log, "VERBOSITY", {"level": 1})
    bar = tqdm(total=3, file=err, disable=False, mininterval=0)
    bar.update(1)
    log.info("halfway note")
    log.warn("careful")
    bar.update(2)
    bar.close()
    text = err.getvalue()
    for line in ("radlens: halfway note", "radlens: warning: careful"):
        at = text.index(line)
        assert text[at - 1] in "\r\n", repr(text[max(0, at - 40):at + 30])   # on a line of its own
        assert text[at + len(line)] == "\n"
    log.info("after the bar")   # no bar left: a plain line
    assert err.getvalue().endswith("radlens: after the bar\n")


def test_top_help_names_compare_by_what_it_ranks_and_lists_143(cli):
    """Issue 25: `radlens --help` called compare "(importance change)" though it ranks by Δr²,
    and its exit codes left out 143 (SIGTERM), which the README lists."""
    text = cli("--help").stdout
    assert "(importance change)" not in text and "(decodability change" in text
    assert "143" in text and "SIGTERM" in text
