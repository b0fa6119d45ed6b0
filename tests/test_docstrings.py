"""Every public name documented: a numpydoc docstring with its parameters and an example that runs.

The public names are the ``__all__`` of every module that ``docs/api.rst``
documents with ``automodapi``. The examples themselves run as doctests (pytest
collects the package's docstrings); these tests make sure none is missing.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import stellarml

REPO = Path(__file__).resolve().parents[1]
API_MODULES = re.findall(r"automodapi:: (\S+)", (REPO / "docs" / "api.rst").read_text())


def _public_objects():
    seen = {}
    for modname in API_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants and registries are described in their module's docstring
            seen.setdefault((obj.__module__, obj.__qualname__), (f"{modname}.{name}", obj))
    return sorted(seen.values(), key=lambda item: item[0])


PUBLIC = _public_objects()


def _section(doc, title):
    """The body of a numpydoc section (``Title`` underlined by dashes), or None."""
    match = re.search(rf"^{title}\n-{{3,}}\n(.*?)(?=^\S[^\n]*\n-{{3,}}\n|\Z)", doc, re.M | re.S)
    return None if match is None else match.group(1)


def _documented_parameters(doc, attributes=False):
    names = set()
    titles = ("Parameters", "Other Parameters") + (("Attributes",) if attributes else ())
    for title in titles:
        body = _section(doc, title) or ""
        for line in body.splitlines():
            if line and not line[0].isspace():
                for part in line.split(":")[0].split(","):
                    names.add(part.strip().lstrip("*"))
    return names


def _own_init(cls):
    """Whether ``cls`` defines its own ``__init__`` (written, or made by dataclasses).

    An inherited one is documented where it is defined: by astropy for
    `~stellarml.LabelTable`, by `~stellarml.libraries.SpectralLibrary` for
    `~stellarml.libraries.ObservedLibrary`.
    """
    return "__init__" in vars(cls)


def _signature_parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj) and not _own_init(obj):
        return []  # e.g. LabelTable: astropy's Table.__init__, documented by astropy
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    return [
        p.name
        for p in params
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _public_modules():
    """Every subpackage, the modules a subpackage's ``__all__`` names, and the recipes."""
    from stellarml.recipes import RECIPES

    names = set(RECIPES.values())
    for info in pkgutil.walk_packages(stellarml.__path__, "stellarml."):
        if not info.ispkg or any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.add(info.name)
        package = importlib.import_module(info.name)
        for name in getattr(package, "__all__", []):
            if inspect.ismodule(getattr(package, name)):
                names.add(f"{info.name}.{name}")
    return sorted(names)


def test_api_page_lists_every_public_name():
    """A function or class in the ``__all__`` of a public module is in the API reference."""
    documented = {id(obj) for _, obj in PUBLIC}
    missing = []
    for modname in _public_modules():
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and id(obj) not in documented:
                missing.append(f"{modname}.{name}")
    assert PUBLIC, "no public names found: docs/api.rst moved?"
    assert not missing, f"public names missing from docs/api.rst: {missing}"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_name_has_an_executed_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    examples = _section(doc, "Examples")
    assert examples is not None, f"{name}: no Examples section"
    run = [
        line
        for line in examples.splitlines()
        if line.lstrip().startswith(">>>") and "+SKIP" not in line
    ]
    assert run, f"{name}: its Examples section has no executed >>> line"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_name_documents_its_parameters(name, obj):
    if inspect.isclass(obj) and issubclass(obj, Exception):
        return  # raised by stellarml, never built by users
    wanted = _signature_parameters(obj)
    # a record's fields (a dataclass, a named tuple) may be given as its Attributes
    documented = _documented_parameters(inspect.getdoc(obj) or "", inspect.isclass(obj))
    missing = [p for p in wanted if p not in documented]
    assert not missing, f"{name}: parameters not in its Parameters section: {missing}"
