"""The layering rules of docs/backends.md ("Layers") and DESIGN.md, checked over every
import in ``src/tinkerkit``, module level or inside a function (a lazy import is still a
dependency).

Every module belongs to one layer (``LAYER_OF``; a new top-level module must be placed),
and ``NEVER`` lists the arrows the docs forbid, from the bottom up:

- foundation (``errors``, ``paths``, ``atomic``, ``_sync``, ``_defaults``, ``protocols``)
  imports nothing else of tinkerkit; ``protocols`` only the standard library and
  ``tinker.types``;
- ``rules`` and ``models`` sit below the backends: anything may import them;
- the backends (engines, store) import nothing above them;
- the service (``server/``) knows nothing of loops, export, recipes or data;
- data → text → loops (``train``) → export / recipes / hparams: nothing upstream imports
  anything downstream, and none of them imports the backends, the service or
  ``tinkerkit.connect``: they take a client, and the face fills it in (``tinkerkit._defaults``);
- the faces sit on top: the package (``tinkerkit/__init__.py``), ``tinkerkit.connect`` (with
  its ``server_probe``), the CLI (``cli``, ``cli_*``), ``demo`` (the ``tinkerkit demo``
  command) and ``testing`` (the pytest plugin and its fault kinds, a pytest entry point).
  Only they import ``tinkerkit.connect`` or ``tinkerkit.server``; nothing below them
  imports a face, or the top-level package (whose names are lazy).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tinkerkit"

FOUNDATION = "foundation"
RULES_MODELS = "rules/models"
BACKENDS = "backends"
SERVICE = "service"
DATA = "data"
TEXT = "text"
TRAIN = "train"
EXPORT = "export"
RECIPES = "recipes"
HPARAMS = "hparams"
CONNECT = "connect"
FACE = "face"

# The first name under ``tinkerkit`` -> its layer (``cli`` and ``cli_*`` are the CLI face).
LAYER_OF = {
    "errors": FOUNDATION,
    "paths": FOUNDATION,
    "atomic": FOUNDATION,
    "_sync": FOUNDATION,
    "_defaults": FOUNDATION,
    "protocols": FOUNDATION,
    "rules": RULES_MODELS,
    "models": RULES_MODELS,
    "backends": BACKENDS,
    "server": SERVICE,
    "data": DATA,
    "text": TEXT,
    "train": TRAIN,
    "export": EXPORT,
    "recipes": RECIPES,
    "hparams": HPARAMS,
    "connect": CONNECT,
    "server_probe": CONNECT,
    "demo": FACE,
    "testing": FACE,
}

LIBRARY = (DATA, TEXT, TRAIN, EXPORT, RECIPES, HPARAMS)
ABOVE_BACKENDS = (SERVICE, *LIBRARY, CONNECT, FACE)

# source layer -> the layers it never imports (docs/backends.md "Layers", DESIGN.md
# "Data flows one way").
NEVER: dict[str, tuple[str, ...]] = {
    FOUNDATION: (RULES_MODELS, BACKENDS, *ABOVE_BACKENDS),
    RULES_MODELS: (BACKENDS, *ABOVE_BACKENDS),
    BACKENDS: ABOVE_BACKENDS,
    SERVICE: (*LIBRARY, CONNECT, FACE),
    DATA: (BACKENDS, SERVICE, CONNECT, FACE, TEXT, TRAIN, EXPORT, RECIPES, HPARAMS),
    TEXT: (BACKENDS, SERVICE, CONNECT, FACE, TRAIN, EXPORT, RECIPES, HPARAMS),
    TRAIN: (BACKENDS, SERVICE, CONNECT, FACE, EXPORT, RECIPES, HPARAMS),
    EXPORT: (BACKENDS, SERVICE, CONNECT, FACE, RECIPES, HPARAMS),
    RECIPES: (BACKENDS, SERVICE, CONNECT, FACE),
    HPARAMS: (BACKENDS, SERVICE, CONNECT, FACE),
}
ARROWS = [(source, target) for source, targets in NEVER.items() for target in targets]


def layer_of(module: str) -> str:
    if module == "tinkerkit":
        return FACE
    top = module.split(".")[1]
    if top == "cli" or top.startswith("cli_"):
        return FACE
    return LAYER_OF[top]


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
    """Every module ``path`` imports, with the line, module level or not."""
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
    """Every module of the package -> the ``tinkerkit`` modules it imports."""
    found: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found[_module_name(path)] = [
            (target, line)
            for target, line in _targets(path)
            if target == "tinkerkit" or target.startswith("tinkerkit.")
        ]
    return found


def _arrow_violations(source: str, target: str) -> list[str]:
    return [
        f"{module}:{line} imports {imported}"
        for module, imported_modules in _imports().items()
        if layer_of(module) == source
        for imported, line in imported_modules
        if layer_of(imported) == target
    ]


def test_the_scan_sees_the_package_and_its_lazy_imports():
    imports = _imports()
    assert {"tinkerkit", "tinkerkit.connect", "tinkerkit.train.session"} <= set(imports)
    # A module-level import, resolved to the submodule.
    assert any(
        t == "tinkerkit.models.mock_modules" for t, _ in imports["tinkerkit.backends.mock.model"]
    )
    # Imports inside functions are seen too.
    assert any(t == "tinkerkit.server.inprocess" for t, _ in imports["tinkerkit.connect"])
    assert any(t == "tinkerkit.connect" for t, _ in imports["tinkerkit"])


def test_every_module_has_a_layer():
    unplaced = []
    for module in _imports():
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"place these in LAYER_OF (tests/test_layers.py): {unplaced}"


def test_the_checks_catch_an_import_they_should():
    """The arrows the faces may draw are found, so an empty answer below means something."""
    assert _arrow_violations(FACE, CONNECT)  # tinkerkit/__init__.py, cli_common.py
    assert _arrow_violations(CONNECT, SERVICE)  # connect starts the in-process service
    assert _arrow_violations(SERVICE, BACKENDS)


@pytest.mark.parametrize(("source", "target"), ARROWS, ids=[f"{s}->{t}" for s, t in ARROWS])
def test_never_arrow(source, target):
    bad = _arrow_violations(source, target)
    assert not bad, f"{source} must never import {target} (docs/backends.md, Layers): {bad}"


@pytest.mark.parametrize(
    "arrow",
    [
        "train->backends",
        "export->backends",
        "recipes->backends",
        "data->backends",
        "train->connect",
        "export->connect",
        "recipes->connect",
        "data->connect",
        "train->service",
        "export->service",
    ],
)
def test_the_issue_s_arrows_are_checked(arrow):
    assert arrow in {f"{s}->{t}" for s, t in ARROWS}


def test_nothing_below_the_face_imports_connect_or_the_service():
    faces = (FACE, CONNECT)
    bad = [
        f"{module}:{line} imports {target}"
        for module, targets in _imports().items()
        if layer_of(module) not in faces
        for target, line in targets
        if layer_of(target) == CONNECT
        or (layer_of(target) == SERVICE and layer_of(module) != SERVICE)
    ]
    assert not bad, (
        f"take a client (the face fills it in: tinkerkit._defaults) instead of connecting: {bad}"
    )


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


# What ``tinkerkit.protocols`` may import: the lowest layer, under the backends too.
PROTOCOL_IMPORTS = ("__future__", "typing", "collections.abc", "tinker")


def test_protocols_import_only_stdlib_typing_and_tinker():
    path = PACKAGE / "protocols.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            found += [module for _ in node.names]
    bad = [name for name in found if name not in PROTOCOL_IMPORTS]
    assert found and not bad, bad
    assert not _imports()["tinkerkit.protocols"]


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
            if layer_of(target) == BACKENDS and not module.startswith(target + ".")
        }
        for module, targets in _imports().items()
        if layer_of(module) == BACKENDS
    }
    cycles = _cycles(graph)
    assert not cycles, cycles


def test_the_client_types_are_the_sdks_own_and_nothing_redeclares_its_methods():
    """Helpers annotate with the SDK's client classes themselves, and no module in src/
    defines a class with a method of the SDK's clients (the offline mirror is gone)."""
    import tinker
    from transformers import PreTrainedTokenizerFast

    from tinkerkit import protocols

    assert protocols.ServiceClientLike is tinker.ServiceClient
    assert protocols.TrainingClientLike is tinker.TrainingClient
    assert protocols.SamplingClientLike is tinker.SamplingClient
    for name in ("encode", "decode", "apply_chat_template", "__call__", "__len__"):
        assert name in vars(protocols.Tokenizer) and hasattr(PreTrainedTokenizerFast, name)
    # A class that defines several of one SDK client's methods mirrors it (the service's
    # Model has forward / optim_step / save, as engines do: a few shared verbs are not a
    # mirror; the deleted mirror defined dozens).
    sdk_classes = (tinker.ServiceClient, tinker.TrainingClient, tinker.SamplingClient)
    sdk_methods = {
        cls.__name__: {n for n in vars(cls) if not n.startswith("_")} for cls in sdk_classes
    }
    assert all(len(names) > 10 for names in sdk_methods.values())
    mirrored = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            defined = {
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            for sdk_name, names in sdk_methods.items():
                shared = sorted(defined & names)
                if len(shared) >= 4:
                    mirrored.append(f"{path.relative_to(SRC)}:{node.name} ~ {sdk_name} {shared}")
    assert not mirrored, mirrored


def test_the_face_fills_in_the_client(tmp_path, monkeypatch):
    """``tk.sft.train(config)`` with no client uses the face's default, ``tk.connect()``
    (here the environment's mock backend), and ``keep_last`` deletes old checkpoints
    through the face's ``tk.rest_client``: the loop itself imports neither."""
    import warnings

    import tinker

    import tinkerkit as tk
    from tinkerkit import _defaults
    from tinkerkit.errors import TinkerkitWarning
    from tinkerkit.train.checkpoints import CheckpointLog

    monkeypatch.setenv("TINKERKIT_BACKEND", "mock")
    assert type(_defaults.service_or_default(None)) is tinker.ServiceClient
    chats = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    ] * 4
    config = tk.sft.Config(
        data=chats,
        epochs=2,
        batch_size=2,
        rank=4,
        save_every=1,
        keep_last=1,
        log_dir=tmp_path / "run",
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", TinkerkitWarning)  # a failed deletion warns
        result = tk.sft.train(config)
    assert result.steps == 4 and result.sampler_path.startswith("tinker://")
    entries = CheckpointLog(tmp_path / "run").entries()
    assert len(entries) == 2 and entries[-1].name == "final"  # keep_last=1, and final
    run_id = result.state_path.split("/")[2]
    listed = tk.rest_client("mock").list_checkpoints(run_id).result().checkpoints
    assert {c.tinker_path for c in listed} == {
        path for e in entries for path in (e.state_path, e.sampler_path)
    }
