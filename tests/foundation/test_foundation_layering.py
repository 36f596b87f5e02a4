"""The data flows one way: drivers -> recorder / inference -> firmware -> (mqtt, GPIO).

Package code never imports `firmware` (only firmware wires packages together), and no
package imports one further down the flow. Checked on the source, so it cannot rot.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from firmware.tools import TOOLS

ROOT = Path(__file__).resolve().parents[2]

# package -> project packages it may import
ALLOWED = {
    "support": {"support"},
    "drivers": {"drivers", "support"},
    "recorder": {"recorder", "drivers", "support"},
    "inference": {"inference", "drivers", "support"},
    "mqtt": {"mqtt", "support"},
    "uplink": {"uplink", "drivers", "support"},
    "web": {"web", "recorder", "drivers", "support"},
    "firmware": {"firmware", "drivers", "recorder", "inference", "mqtt", "uplink", "support",
                 "web"},
    "central": {"central", "mqtt", "support"},  # the Command Center service, never firmware
    # development and test tools (a demo, test cameras, a local broker): not on a node
    "devtools": {"devtools", "firmware", "drivers", "recorder", "inference", "mqtt", "support",
                 "uplink", "web", "central"},
}


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in ALLOWED}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_data_flow(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = project_imports(path) - ALLOWED[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level and inside functions (a lazy
    import is still a dependency, and a cycle through one breaks at the first call that
    runs it), but not those under ``if TYPE_CHECKING:``, which never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped]


def test_runtime_imports_see_function_level_ones_but_not_type_checking() -> None:
    tree = ast.parse("import a\n"
                     "def f():\n    from b import c\n"
                     "if TYPE_CHECKING:\n    import d\n")
    names = [getattr(n, "module", None) or n.names[0].name for n in runtime_imports(tree)]
    assert sorted(names) == ["a", "b"]


# Cycles tolerated for now, each with its owner's issue; none today. (The last one,
# mqtt.link <-> mqtt.settings, went when `Broker`, a parsed URL, moved to mqtt.settings.)
KNOWN_CYCLES: set[str] = set()


@functools.cache
def import_cycles() -> list[str]:
    """Each cycle of the project's import graph, as "a -> b -> a" from its first module
    in sorted order."""
    modules = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        tree = ast.parse(path.read_text())
        for node in runtime_imports(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                deps |= submodules
                if node.module in modules and len(submodules) < len(node.names):
                    deps.add(node.module)  # names defined by the module itself
        graph[name] = deps - {name}
    # `ronda`'s launchers import their tools by name when the command runs: an edge too
    graph["firmware.tools"] |= {tool.module for tool in TOOLS}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                loop = [*stack, node]
                loop = loop[loop.index(dep):]
                first = loop.index(min(loop))  # the same cycle reads the same from anywhere
                loop = loop[first:] + loop[:first]
                cycles.append(" -> ".join([*loop, loop[0]]))
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    assert len(graph) > 50, "the project's modules were not found"
    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return cycles


def test_no_import_cycles_between_firmware_modules() -> None:
    """The import graph inside the project, function-level imports included, is acyclic."""
    cycles = [c for c in import_cycles() if c not in KNOWN_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_known_import_cycles_are_still_there() -> None:
    """A fixed cycle leaves KNOWN_CYCLES, so that it cannot come back unnoticed."""
    assert set(import_cycles()) >= KNOWN_CYCLES


def test_firmware_names_central_and_devtools_only_in_the_launcher_table() -> None:
    """`firmware` reaches the Command Center's and the development tools only through
    `firmware.tools.TOOLS` (imported by name when such a command runs, never at
    import time): each entry is a module of `central` or `devtools` with `register`, and
    no other firmware module so much as names those packages in an import string."""
    for tool in TOOLS:
        assert tool.package in {"central", "devtools"}, tool
        path = ROOT / (tool.module.replace(".", "/") + ".py")
        assert "def register(" in path.read_text(), f"{path} has no register(sub)"
    by_name = re.compile(r"""["'](central|devtools)\.""")
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "firmware").rglob("*.py"))
                 if path != ROOT / "firmware" / "tools.py" and by_name.search(path.read_text())]
    assert not offenders, offenders
