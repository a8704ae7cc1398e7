"""The house's rules, each checked on the source (README "Development"; STYLE.md "Layout").

Floors: the ground floor (errors, log, workers, devices, provenance, names) imports
nothing above it; io knows files and never imports the lens; the lens reads and writes no
file; the report reads tables, never models (no torch, no encoders); the library never
imports the commands; no import cycles.
"""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PKG = REPO / "radlens_cli"
GROUND = {"radlens_cli", "radlens_cli.errors", "radlens_cli.log", "radlens_cli.workers",
          "radlens_cli.devices", "radlens_cli.provenance", "radlens_cli.names"}


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(path: Path, top_only: bool = False) -> list[tuple[str, int]]:
    """(module, line) of every import in a file (resolved to absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _name(path)
    nodes = tree.body if top_only else list(ast.walk(tree))
    if top_only:  # module level, including inside top-level if/try (not TYPE_CHECKING)
        todo, nodes = list(tree.body), []
        while todo:
            n = todo.pop()
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                continue
            if isinstance(n, (ast.If, ast.Try)):
                todo += n.body + n.orelse + [s for h in getattr(n, "handlers", []) for s in h.body]
            nodes.append(n)
    out = []
    for n in nodes:
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = me.split(".")
                base = base[: len(base) - n.level + (path.name == "__init__.py")]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module
            out.append((mod, n.lineno))
            out += [(f"{mod}.{a.name}", n.lineno) for a in n.names if f"{mod}.{a.name}" in MODULES]
    return out


def _offences(modules, bad) -> list[str]:
    return [f"{MODULES[m].relative_to(REPO)}:{line} imports {imp}"
            for m in modules for imp, line in _imports(MODULES[m]) if bad(imp)]


def _under(prefix: str):
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def test_ground_floor_imports_nothing_above_it():
    assert _offences(GROUND, lambda imp: imp.startswith("radlens_cli") and imp not in GROUND
                     and not imp.startswith("radlens_cli.errors")) == []


def test_io_never_imports_the_lens_nor_the_commands():
    assert _offences(_under("radlens_cli.io"), lambda imp: imp.startswith(("radlens_cli.lens",
                                                                           "radlens_cli.commands"))) == []


def test_the_lens_reads_and_writes_no_file():
    files = ("radlens_cli.io.files", "radlens_cli.io.formats", "h5py", "typer", "radlens_cli.commands",
             "radlens_cli.encoders", "radlens_cli.report")
    assert _offences(_under("radlens_cli.lens"), lambda imp: imp.startswith(files)) == []
    calls = []
    for m in _under("radlens_cli.lens"):
        for n in ast.walk(ast.parse(MODULES[m].read_text(encoding="utf-8"))):
            if isinstance(n, ast.Call):
                f = ast.unparse(n.func)
                if f == "open" or f.split(".")[-1] in ("to_csv", "to_hdf", "save", "savez", "load", "read_csv",
                                                        "read_table", "write_table", "tofile", "fromfile"):
                    calls.append(f"{MODULES[m].relative_to(REPO)}:{n.lineno} {f}(...)")
    assert calls == []


def test_the_report_reads_tables_never_models():
    assert _offences(_under("radlens_cli.report"),
                     lambda imp: imp.startswith(("torch", "radlens_cli.encoders", "radlens_cli.commands"))) == []
    used = [f"{MODULES[m].relative_to(REPO)}:{n.lineno}" for m in _under("radlens_cli.report")
            for n in ast.walk(ast.parse(MODULES[m].read_text(encoding="utf-8")))
            if isinstance(n, ast.Name) and n.id == "torch"]
    assert used == []


def test_the_library_never_imports_the_commands():
    lib = [m for m in MODULES if not m.startswith(("radlens_cli.commands", "radlens_cli.main",
                                                   "radlens_cli.manpages", "radlens_cli.__main__"))]
    assert _offences(lib, lambda imp: imp.startswith("radlens_cli.commands")) == []


def test_no_import_cycles_between_modules():
    graph = {m: {imp for imp, _ in _imports(p, top_only=True) if imp in MODULES and imp != m}
             for m, p in MODULES.items()}
    cycles, state = [], {}

    def visit(m, trail):
        state[m] = "open"
        for n in sorted(graph[m]):
            # a submodule importing its own package's __init__ is not a cycle (Python binds it first)
            if m.startswith(n + "."):
                continue
            if state.get(n) == "open":
                cycles.append(" -> ".join(trail[trail.index(n):] + [n]))
            elif n not in state:
                visit(n, trail + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_every_module_imports_in_a_fresh_interpreter_in_any_order(order):
    names = sorted(m for m in MODULES if m != "radlens_cli.__main__")
    if order == "reversed":
        names.reverse()
    elif order == "shuffled":
        random.Random(24).shuffle(names)
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % names
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_radlens_help_loads_no_heavy_library():
    heavy = ("torch", "pandas", "scipy", "h5py", "SimpleITK", "matplotlib", "radiomics", "onnxruntime")
    code = ("import sys, radlens_cli.main\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_package_imports_sit_at_the_top_or_say_why_not():
    """A function-local import of the package's own modules is for a heavy or optional
    dependency (or one the module must not load at import) and says so in a comment."""
    bare = []
    for m, path in MODULES.items():
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        for fn in ast.walk(ast.parse(src)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                        imp.startswith("radlens_cli") for imp, _ in _imports_of(n, m, path)):
                    said = "#" in lines[n.lineno - 1] or lines[n.lineno - 2].strip().startswith("#")
                    if not said:
                        bare.append(f"{path.relative_to(REPO)}:{n.lineno}")
    assert sorted(set(bare)) == []


def _imports_of(node, me: str, path: Path) -> list[tuple[str, int]]:
    if isinstance(node, ast.Import):
        return [(a.name, node.lineno) for a in node.names]
    if node.level:
        base = me.split(".")
        base = base[: len(base) - node.level + (path.name == "__init__.py")]
        return [(".".join(base + ([node.module] if node.module else [])), node.lineno)]
    return [(node.module or "", node.lineno)]


def test_every_csv_goes_through_io_s_one_writer():
    """io.formats.write_csv writes every CSV (with its provenance sidecar); the case-table
    writer io.tables.write_table is the one other place a DataFrame becomes text."""
    writers = [f"{MODULES[m].relative_to(REPO)}:{n.lineno}" for m in MODULES
               if m not in ("radlens_cli.io.formats", "radlens_cli.io.tables")
               for n in ast.walk(ast.parse(MODULES[m].read_text(encoding="utf-8")))
               if isinstance(n, ast.Call) and (ast.unparse(n.func).endswith((".to_csv", "csv.writer", "csv.DictWriter"))
                                               or ast.unparse(n.func) in ("DictWriter", "writer"))]
    assert writers == []


def test_no_library_module_nor_benchmark_names_the_commands():
    """Issue 24's grep: `grep -r radlens_cli.commands radlens_cli/{lens,io,encoders,radiomics,report}
    benchmarks` finds nothing (benchmarks call the library, or run `radlens` as users do)."""
    folders = [PKG / d for d in ("lens", "io", "encoders", "radiomics", "report")] + [REPO / "benchmarks"]
    found = [f"{p.relative_to(REPO)}:{i}" for d in folders for p in sorted(d.rglob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if "radlens_cli.commands" in line or "radlens_cli/commands" in line]
    assert found == []
