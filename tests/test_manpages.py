"""Man pages are generated from the same help text as --help; committed pages must be current."""

import os

from radlens_cli.manpages import generate
from tests.conftest import REPO


def test_man_pages_are_current():
    pages = generate()
    assert "radlens.1" in pages
    folder = REPO / "man"
    committed = {p for p in os.listdir(folder) if p.endswith(".1")}
    assert committed == set(pages), "man/ is stale: run `python -m radlens_cli.manpages man`"
    for name, text in pages.items():
        assert (folder / name).read_text(encoding="utf-8") == text, (
            f"man/{name} is stale: run `python -m radlens_cli.manpages man`")


def test_every_command_has_a_summary_and_example():
    import typer.main

    from radlens_cli.main import app

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        first = (cmd.help or "").strip().split("\n")[0]
        assert first and len(first) <= 60, f"{name}: first help line missing or > 60 chars"
        assert "radlens " + name in (cmd.help or ""), f"{name}: help has no example using it"
        for p in cmd.params:
            assert getattr(p, "help", None), f"{name}: parameter {p.name} has no help"


def test_man_pages_format_without_troff_warnings():
    """Issue 25: `man -l man/radlens-compare.1` printed `cannot adjust line` warnings."""
    import shutil
    import subprocess

    groff = shutil.which("groff")
    assert groff, "groff is needed (tests/system-tools.sh installs it)"
    for name, text in generate().items():
        r = subprocess.run([groff, "-k", "-man", "-Tutf8", "-ww", "-rLL=80n"], input=text.encode(),
                           capture_output=True)
        assert r.returncode == 0, name
        assert not r.stderr.strip(), f"{name}: {r.stderr.decode()[:300]}"
