"""The package's structure: which modules may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import spatialedm

PACKAGE = Path(spatialedm.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (top level or inside functions).

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    skipped = {
        id(node)
        for guard in ast.walk(tree)
        if isinstance(guard, ast.If) and "TYPE_CHECKING" in ast.unparse(guard.test)
        for stmt in guard.body
        for node in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spatialedm")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("spatialedm"):
                continue
            # ``from . import metrics`` imports that module; ``from .x import y`` imports module x
            modules = {f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")}
            found |= modules if len(modules) == len(node.names) else modules | {target}
    return {name for name in found if _is_module(name)}


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_product_module_imports_the_baselines():
    # The baselines are the benchmark's yardstick; what the product runs (prior="knn") lives in _knn.
    # Only the package (which exposes sem.baselines) and the CLI's demo, which prints the model's scores
    # beside the baselines' as the tutorials do, may import them.
    users = {"spatialedm", "spatialedm._cli"}
    importers = sorted(
        mod for mod, deps in _graph().items() if "spatialedm.baselines" in deps and mod not in users
    )
    assert importers == []


def test_no_import_cycle():
    graph = _graph()
    # a package's __init__ imports its submodules to re-export them; that edge is not a dependency
    edges = {mod: {d for d in deps if not d.startswith(mod + ".")} for mod, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(mod, stack):
        state[mod] = 1
        for dep in sorted(edges.get(mod, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


_LIST_IMPORTS = """
import json, sys
before = set(sys.modules)
import spatialedm
print(json.dumps([m for m in sys.modules if m not in before and not m.startswith("spatialedm")]))
"""

_COMPARE = """
import importlib, json, logging, sys, warnings

def snapshot():
    loggers = {
        name: (log.level, log.disabled, log.propagate, len(log.filters), len(log.handlers))
        for name, log in logging.root.manager.loggerDict.items()
        if isinstance(log, logging.Logger) and not name.startswith("spatialedm")
    }
    root = logging.getLogger()
    loggers["<root>"] = (root.level, root.disabled, True, len(root.filters), len(root.handlers))
    return [repr(f) for f in warnings.filters], loggers

for name in json.loads(sys.stdin.read()):
    try:
        importlib.import_module(name)
    except Exception:
        pass
filters, loggers = snapshot()
import spatialedm
filters_after, loggers_after = snapshot()
changed = sorted(n for n in loggers if loggers_after[n] != loggers[n])
filtered_new = sorted(n for n in loggers_after if n not in loggers and loggers_after[n][3])
print(json.dumps({"filters": filters_after == filters, "changed": changed, "filtered_new": filtered_new}))
"""


def test_import_leaves_other_libraries_alone():
    import json
    import os
    import subprocess
    import sys

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])
    )

    def run(script, stdin=""):
        out = subprocess.run(
            [sys.executable, "-c", script], input=stdin, capture_output=True, text=True, env=env, check=True
        )
        return out.stdout.strip().splitlines()[-1]

    # Everything spatialedm imports is imported first, so that only spatialedm's own import-time code
    # runs between the two snapshots (third-party libraries set up their own loggers when imported).
    dependencies = run(_LIST_IMPORTS)
    result = json.loads(run(_COMPARE, dependencies))
    assert result == {"filters": True, "changed": [], "filtered_new": []}


def test_quiet_third_party_restores_the_filters_after_an_error():
    import logging
    import warnings

    import pytest

    from spatialedm._logging import MESSAGES, quiet_third_party

    loggers = [logging.getLogger(name) for name, _ in MESSAGES]
    before = list(warnings.filters), [list(log.filters) for log in loggers]
    with pytest.raises(RuntimeError), quiet_third_party(training=True):
        assert all(log.filters for log in loggers)
        raise RuntimeError
    assert (list(warnings.filters), [list(log.filters) for log in loggers]) == before
    # outside training the warning filters are not touched: Python would show already-shown warnings again
    with quiet_third_party():
        assert list(warnings.filters) == before[0]
