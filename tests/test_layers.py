"""The dependency rules of DESIGN.md, read from the source: api imports the contract and
the registry of flows but never its steps; flows never import api; blocks import nothing
of ours."""

import ast
from pathlib import Path

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
