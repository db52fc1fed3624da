"""The dependency rules of DESIGN.md, read from the source: api imports the contract and
the registry of flows but never its steps; flows never import api; blocks import nothing
of ours."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("api", "flows", "blocks", "deployments")


def imports_of(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import of our packages under ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] in OURS:
                    found.append((str(path.relative_to(ROOT)), name))
    return found


def test_flows_never_import_the_web_layer_or_deployments():
    bad = [(f, m) for f, m in imports_of("flows") if m.split(".")[0] in ("api", "deployments")]
    assert bad == []


def test_blocks_import_nothing_of_ours():
    assert imports_of("blocks") == []


def test_api_reaches_flows_only_through_the_contract_registry_and_settings():
    allowed = ("flows.contract", "flows.registry", "flows.settings", "flows.params", "flows.errors")
    bad = [
        (f, m) for f, m in imports_of("api")
        if m.startswith("flows") and m != "flows" and not m.startswith(allowed)
    ]
    assert bad == []


def test_the_contract_imports_no_steps_and_no_web_framework():
    for path in (ROOT / "flows" / "contract").rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in modules if m.startswith(("flows.steps", "fastapi", "api", "PIL", "cv2", "librosa"))}, path


def test_each_surface_stands_on_the_gateway_not_on_the_other():
    """``api/stupeflix`` and ``api/vimqu`` never import each other; the run gateway and the
    app's shared modules import no surface (the app itself mounts both)."""
    crossing = [(f, m) for f, m in imports_of("api")
                if (f.startswith("api/vimqu/") and m.startswith("api.stupeflix"))
                or (f.startswith("api/stupeflix/") and m.startswith("api.vimqu"))
                or (f in ("api/gateway.py", "api/create_lock.py", "api/watcher.py")
                    and m.startswith(("api.stupeflix", "api.vimqu")))]
    assert crossing == []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> our modules it imports (at module level or inside functions), for every
    module under ``package``; ``from a import b`` counts ``a.b`` when that is a module."""
    modules = {module_name(path): path for path in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), if any.
    A package's ``__init__`` importing its own submodules is not one."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            if not imported.startswith(module + "."):
                cycle = visit(imported, path + [module])
                if cycle:
                    return cycle
        done.add(module)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def layers(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with each subpackage of ``flows`` (``flows.steps``, ``flows.outputs``, ...)
    as one node: a layer must not import a module that imports the layer back."""
    def layer(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir() else module

    merged: dict[str, set[str]] = {}
    for module, imported in graph.items():
        merged.setdefault(layer(module), set()).update(layer(m) for m in imported)
    return {name: imported - {name} for name, imported in merged.items()}


@pytest.mark.parametrize("level", ["modules", "layers"])
def test_flows_have_no_import_cycle(level):
    """Steps sit on the run scope, task flows on the steps: nothing imports back up."""
    graph = import_graph("flows") if level == "modules" else layers(import_graph("flows"))
    cycle = a_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"a.x"}, "a.x": set()}) is None


def test_each_storage_driver_has_its_own_module():
    from blocks.registered import DRIVERS

    assert {name: cls.__module__ for name, cls in DRIVERS.items()} == {
        name: f"blocks.storages.{name}" for name in ("s3", "gcs", "azure", "ftp", "sftp")}
