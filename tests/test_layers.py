"""The layering rules, checked over every import in ``src/tinkerkit``.

data → datums → loops → checkpoints → export; the backends (and the rules and models
they share with ``data``) import nothing above them; ``tinkerkit.protocols`` (the client
and tokenizer Protocols every layer may annotate with) sits below them all and imports
only the standard library and ``tinker.types``; nothing below the face
(``tinkerkit/__init__.py``) imports the top-level package, whose names are lazy. Imports
inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tinkerkit"

# What sits above the backends (and above tinkerkit.rules / tinkerkit.models).
ABOVE_BACKENDS = (
    "tinkerkit.connect",
    "tinkerkit.data",
    "tinkerkit.demo",
    "tinkerkit.export",
    "tinkerkit.hparams",
    "tinkerkit.recipes",
    "tinkerkit.server",
    "tinkerkit.testing",
    "tinkerkit.text",
    "tinkerkit.train",
)
FACES = ("tinkerkit.cli", "tinkerkit.server")  # cli, cli_common, cli_rl, ... by prefix


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (SRC / relative).with_suffix(".py").is_file() or (
        SRC / relative / "__init__.py"
    ).is_file()


def _targets(path: Path) -> Iterator[tuple[str, int]]:
    """Every ``tinkerkit`` module ``path`` imports, with the line, module level or not."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                # ``from pkg import sub`` depends on pkg.sub, not on pkg's own names.
                yield (submodule if _is_module(submodule) else module), node.lineno


@cache
def _imports() -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_module_name(path)] = [
            (target, line)
            for target, line in _targets(path)
            if target == "tinkerkit" or target.startswith("tinkerkit.")
        ]
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module}:{line} imports {target}"
        for module, targets in _imports().items()
        if _within(module, sources)
        for target, line in targets
        if _within(target, forbidden) or any(target.startswith(f + "_") for f in forbidden)
    ]


def test_the_scan_sees_the_package():
    imports = _imports()
    assert "tinkerkit.backends.service_client" in imports
    assert any(
        t == "tinkerkit.backends.rest_client"
        for t, _ in imports["tinkerkit.backends.service_client"]
    )
    # Imports inside functions are seen too.
    assert any(t == "tinkerkit.connect" for t, _ in imports["tinkerkit.train.session"])


# What ``tinkerkit.protocols`` may import: the lowest layer, under the backends too.
PROTOCOL_IMPORTS = ("__future__", "typing", "collections.abc", "tinker.types")


def test_protocols_import_only_stdlib_typing_and_tinker_types():
    path = PACKAGE / "protocols.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            # ``from tinker import types`` is tinker.types; any other name of tinker is not.
            found += [f"{module}.{a.name}" if module == "tinker" else module for a in node.names]
    bad = [name for name in found if name not in PROTOCOL_IMPORTS]
    assert found and not bad, bad
    assert not _imports()["tinkerkit.protocols"]


def test_nothing_below_the_face_imports_the_top_level_package():
    bad = [
        f"{module}:{line}"
        for module, targets in _imports().items()
        if module != "tinkerkit"
        for target, line in targets
        if target == "tinkerkit"
    ]
    assert not bad, (
        "import the module that defines the name (e.g. `from tinkerkit.connect import "
        f"connect`), not the lazy top-level package: {bad}"
    )


@pytest.mark.parametrize("layer", ["tinkerkit.backends", "tinkerkit.rules", "tinkerkit.models"])
def test_backends_rules_and_models_import_nothing_above_them(layer):
    forbidden = (*ABOVE_BACKENDS, *FACES)
    if layer != "tinkerkit.backends":
        forbidden = (*forbidden, "tinkerkit.backends")
    bad = _violations((layer,), forbidden)
    assert not bad, bad


def test_data_does_not_import_backends_loops_or_export():
    forbidden = (
        "tinkerkit.backends",
        "tinkerkit.train",
        "tinkerkit.recipes",
        "tinkerkit.export",
        *FACES,
    )
    bad = _violations(("tinkerkit.data",), forbidden)
    assert not bad, bad


def test_loops_do_not_import_export_recipes_or_the_faces():
    forbidden = ("tinkerkit.export", "tinkerkit.recipes", "tinkerkit.demo", *FACES)
    bad = _violations(("tinkerkit.train",), forbidden)
    assert not bad, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_backends_have_no_import_cycle():
    graph = {
        module: {
            target
            for target, _ in targets
            # A package's __init__ re-exporting its submodules is no cycle.
            if _within(target, ("tinkerkit.backends",)) and not module.startswith(target + ".")
        }
        for module, targets in _imports().items()
        if _within(module, ("tinkerkit.backends",))
    }
    cycles = _cycles(graph)
    assert not cycles, cycles


def test_export_imports_no_recipes_or_faces():
    bad = _violations(("tinkerkit.export",), ("tinkerkit.recipes", "tinkerkit.demo", *FACES))
    assert not bad, bad


def test_the_library_imports_no_face():
    library = (
        "tinkerkit.backends",
        "tinkerkit.data",
        "tinkerkit.export",
        "tinkerkit.models",
        "tinkerkit.recipes",
        "tinkerkit.rules",
        "tinkerkit.train",
    )
    bad = _violations(library, ("tinkerkit.demo", "tinkerkit.testing", *FACES))
    assert not bad, bad


def test_protocols_name_only_members_every_client_has():
    """The Protocols' members exist, with their parameters, on the official clients and
    the offline ones (mypy checks the types; this catches a renamed or dropped method)."""
    import inspect

    import tinker
    from transformers import PreTrainedTokenizerFast

    from tinkerkit import protocols
    from tinkerkit.backends.sampling_client import SamplingClient
    from tinkerkit.backends.service_client import ServiceClient
    from tinkerkit.backends.training_client import TrainingClient

    pairs = {
        protocols.SamplingClientLike: (tinker.SamplingClient, SamplingClient),
        protocols.TrainingClientLike: (tinker.TrainingClient, TrainingClient),
        protocols.ServiceClientLike: (tinker.ServiceClient, ServiceClient),
        protocols.Tokenizer: (PreTrainedTokenizerFast,),
    }
    for protocol, classes in pairs.items():
        members = [
            n
            for n, v in vars(protocol).items()
            if ((not n.startswith("_") or n == "__call__") and callable(v))
            or isinstance(v, property)
        ]
        assert members, protocol
        for cls in classes:
            for name in members:
                wanted = getattr(protocol, name)
                if isinstance(wanted, property):
                    continue  # tokenizer ids: HF answers them through __getattr__
                have = inspect.signature(getattr(cls, name)).parameters
                takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in have.values())
                for param in inspect.signature(wanted).parameters.values():
                    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                        continue
                    if param.kind is param.POSITIONAL_ONLY:
                        assert len(have) > 1, (cls, name)
                        continue
                    assert param.name in have or takes_kwargs, (cls.__name__, name, param.name)
