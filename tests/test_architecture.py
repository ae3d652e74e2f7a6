"""The layering rules of DESIGN.md §1, checked on the source with the ast module.

1. Floors from the ground up: ``mfg`` (1) -> ``simulator``, ``analysis`` (2) -> ``mfgsim``
   (3) -> ``benchmarks``, ``examples`` (4). An import may only go down a floor, and the two
   packages of floor 2 do not import each other.
2. No module imports another module's private (``_``-prefixed) names, inside a package or
   across; a package may import its own private modules (its compiled kernels) whole.
3. No module imports a private module of another package.

Every offence is reported with its file, line and what it imports.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"mfg": 1, "simulator": 2, "analysis": 2, "mfgsim": 3, "benchmarks": 4, "examples": 4}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def offences(top: str, path: Path, source: str) -> list[str]:
    """The rule breaks of one file of package (or folder) ``top``, one line each."""
    floor, where, out = FLOORS[top], path.relative_to(ROOT), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [(node.module, [alias.name for alias in node.names])]
        elif isinstance(node, ast.ImportFrom):  # relative: inside the same package
            module = node.module or ""
            names = [alias.name for alias in node.names]
            if module and not _private(module.split(".")[-1]):
                out += [f"{where}:{node.lineno}: imports private name {n} from .{module}" for n in names
                        if _private(n)]
            continue
        else:
            continue
        for module, names in imported:
            head, *rest = module.split(".")
            if head in FLOORS and head != top:
                other = FLOORS[head]
                if other > floor or (other == floor and floor == 2):
                    out.append(f"{where}:{node.lineno}: {top} (floor {floor}) imports {module} (floor {other})")
                if any(_private(part) for part in rest):
                    out.append(f"{where}:{node.lineno}: imports the private module {module} of another package")
            out += [f"{where}:{node.lineno}: imports private name {n} from {module}" for n in names if _private(n)]
    return out


def test_imports_go_down_the_floors_and_never_reach_into_private_names():
    found = []
    for top in FLOORS:
        for path in sorted((ROOT / top).rglob("*.py")):
            found += offences(top, path, path.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("top, source, expected", [
    ("mfg", "from mfgsim.io import check_writable\n", "mfg (floor 1) imports mfgsim.io (floor 3)"),
    ("analysis", "import simulator.market\n", "analysis (floor 2) imports simulator.market (floor 2)"),
    ("mfgsim", "from .campaign import _set_path\n", "imports private name _set_path from .campaign"),
    ("benchmarks", "from mfgsim.studies.calibration import _helper\n", "imports private name _helper"),
    ("benchmarks", "from simulator import _book_kernels\n", "imports private name _book_kernels"),
    ("examples", "import simulator._market_kernels\n", "private module simulator._market_kernels"),
    ("simulator", "from . import _market_kernels as MK\nfrom mfg.fd import solve\n", None),
])
def test_the_checker_names_each_kind_of_offence(top, source, expected):
    """The checker itself: each rule is caught (with its line), and allowed imports pass."""
    found = offences(top, ROOT / top / "probe.py", source)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0] and found[0].startswith(f"{top}/probe.py:1: "), found
