"""The import layering of ../shared/DESIGN.md, read from the source (imports inside functions count too):
each layer imports only from the layers above it, data and models not from each other, inference never
from training, serving (the HTTP shell) never from evaluation, and no module imports itself back through others."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "cnnlab"

# Top to bottom: a module may import from its own layer's package or from any layer above.
LAYERS = [
    {"cnnlab.errors", "cnnlab.catalog", "cnnlab.files", "cnnlab.memory", "cnnlab.preprocessing", "cnnlab.config",
     "cnnlab.calibration", "cnnlab.ownership", "cnnlab.migrations", "cnnlab.flags", "cnnlab.artifacts"},
    {"cnnlab.data", "cnnlab.models"},
    {"cnnlab.rundir"},
    {"cnnlab.training", "cnnlab.inference"},
    {"cnnlab.evaluation", "cnnlab.serving"},
    {"cnnlab.workflows", "cnnlab.experiments"},
    {"cnnlab.cli"},
    {"cnnlab.__main__", "cnnlab"},
]
APART = [("cnnlab.data", "cnnlab.models"), ("cnnlab.models", "cnnlab.data"), ("cnnlab.inference", "cnnlab.training"),
         ("cnnlab.training", "cnnlab.inference"),
         ("cnnlab.serving", "cnnlab.training")]


def _name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every cnnlab module this file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # "from cnnlab import files"
    modules = {_name(p) for p in SRC.rglob("*.py")}
    own = _name(path) if path.is_relative_to(SRC) else None  # a package importing its own submodules
    return {m for m in found if m in modules and m not in ("cnnlab", own)}


GRAPH = {_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(module: str) -> tuple[int, str]:
    for i, layer in enumerate(LAYERS):
        for unit in sorted(layer, key=len, reverse=True):
            if module == unit or module.startswith(unit + "."):
                return i, unit
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_from_its_own_package_or_the_layers_above(module):
    level, unit = _layer(module)
    wrong = []
    for imported in GRAPH[module]:
        their_level, their_unit = _layer(imported)
        if their_level > level or (their_level == level and their_unit != unit and level > 0):
            wrong.append(imported)
        if (unit, their_unit) in APART:
            wrong.append(imported)
    assert not wrong, f"{module} imports {sorted(set(wrong))} from its own layer or below"


def test_data_and_models_import_nothing_from_training_evaluation_or_inference():
    low = [m for m in GRAPH if _layer(m)[1] in ("cnnlab.data", "cnnlab.models")]
    high = ("cnnlab.training", "cnnlab.evaluation", "cnnlab.inference", "cnnlab.workflows", "cnnlab.rundir")
    assert low and not {(m, i) for m in low for i in GRAPH[m] if i.startswith(high)}


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(GRAPH.get(module, ())):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else nxt)
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_an_import_inside_a_function(tmp_path):
    probe = SRC / "data" / "sources.py"
    assert "cnnlab.errors" in _imports(probe)
    fake = tmp_path / "f.py"
    fake.write_text("def f():\n    from cnnlab.training import fit\n")
    assert _imports(fake) == {"cnnlab.training", "cnnlab.training.fit"}
