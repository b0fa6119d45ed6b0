"""The import graph of stellarml: no cycles (lazy imports included) and layers that hold.

Every ``import`` and ``from ... import`` in the package, at module level or
inside a function, is an edge from the importing module to the stellarml
module it names (``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg``). Python's implicit import of parent packages is
not an edge.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stellarml"


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {
        _module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts and path.name != "_version.py"
    }


def _resolve(module, is_package, node):
    """Absolute name of the module a ``from`` import refers to."""
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph():
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target == "stellarml._version":  # generated at install, imports nothing
                    continue
                while target and target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]  # import a.b.c -> the deepest known module
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _edges_between(graph, source_prefix, target_prefixes):
    def under(name, prefix):
        return name == prefix or name.startswith(prefix + ".")

    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if under(a, source_prefix)
        for b in targets
        if any(under(b, t) for t in target_prefixes)
    )


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_graph_sees_lazy_imports(graph):
    # analysis imports the model-file reader inside read_model only
    assert "stellarml.io.asdf.model_io" in graph["stellarml.analysis"]
    assert "stellarml.models.remap.model" in graph["stellarml.models.remap.ensemble"]


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_cycle_detection_works():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_models_do_not_import_io_analysis_catalog_cli_or_recipes(graph):
    forbidden = (
        "stellarml.io",
        "stellarml.analysis",
        "stellarml.catalog",
        "stellarml.cli",
        "stellarml.recipes",
        "stellarml.distributed",
    )
    assert _edges_between(graph, "stellarml.models", forbidden) == []


def test_methods_do_not_import_each_other(graph):
    methods = sorted(
        name
        for name in graph
        if name.count(".") == 2
        and name.startswith("stellarml.models.")
        and (PACKAGE / "models" / name.rsplit(".", 1)[1] / "__init__.py").exists()
    )
    assert "stellarml.models.remap" in methods
    for method in methods:
        others = [m for m in methods if m != method]
        assert _edges_between(graph, method, others) == [], method


def test_training_is_generic(graph):
    assert (
        _edges_between(graph, "stellarml.training", ("stellarml.models", "stellarml.recipes")) == []
    )


def test_lower_layers_do_not_reach_up(graph):
    upper = ("stellarml.analysis", "stellarml.cli", "stellarml.recipes", "stellarml.catalog")
    for lower in (
        "stellarml.spectra",
        "stellarml.posterior",
        "stellarml.labels",
        "stellarml.flags",
    ):
        assert _edges_between(graph, lower, (*upper, "stellarml.models", "stellarml.io")) == []


def test_nothing_imports_the_package_root(graph):
    # the root imports analysis, io and models: importing it from inside is a latent cycle
    assert sorted(a for a, targets in graph.items() if "stellarml" in targets) == []
