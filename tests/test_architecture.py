"""The package's imports run one way (ARCHITECTURE.md): utilities -> models, tensor ops and data -> pipelines ->
training, evaluation, hub and test helpers -> commands. Every import statement of every module counts, those
inside functions too; the walk reads the source (ast), so nothing is imported to check it."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Layer of each part of the package, lowest first; a module may import its own layer and the ones below.
LAYERS = {
    "cascade.utils": 0,
    "cascade.ops": 1,
    "cascade.models": 1,
    "cascade.data": 1,
    "cascade.pipelines": 2,
    "cascade.training": 3,
    "cascade.eval": 3,
    "cascade.hub": 3,
    "cascade.testing": 3,
    "cascade.app": 3,
    "cascade.rating": 3,
    "cascade.commands": 4,
    "cascade.cli": 4,
    "cascade.__main__": 4,
    "cascade": 5,  # the package's public names (lazy): nothing inside it imports them
}


def module_files() -> dict[str, Path]:
    """Module name -> file, for ``cascade/`` and ``pipelines/`` (installed as ``cascade.pipelines``)."""
    files = {}
    for root, package in ((REPO / "cascade", "cascade"), (REPO / "pipelines", "cascade.pipelines")):
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package, *parts])] = path
    return files


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def layer(module: str) -> int:
    """The layer of the longest prefix of ``module`` in :data:`LAYERS`."""
    prefixes = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(prefixes, key=len)]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_every_module_has_a_layer(graph):
    for module in graph:
        assert any(module == prefix or module.startswith(prefix + ".") for prefix in LAYERS), module


def test_no_import_goes_from_a_lower_layer_to_a_higher_one(graph):
    upward = sorted(
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_the_imports_have_no_cycle(graph):
    state, cycles = {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_walk_sees_the_imports_it_checks(graph):
    # The check is only as good as the walk: it resolves absolute, relative and function-level imports.
    assert "cascade.models.video_unet" in graph["cascade.pipelines.stage_base"]  # absolute
    assert "cascade.pipelines.stage_base" in graph["cascade.pipelines.keyframes"]  # relative
    assert "cascade.data.media_io" in graph["cascade.commands.generate"]  # in a function
    assert layer("cascade.pipelines.cascade") == 2 and layer("cascade.utils.checks") == 0
