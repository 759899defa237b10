"""pyproject.toml's extras match the imports: every third-party package that cascade/ or pipelines/ imports
and the core dependencies do not provide is in an extra, and every package of an extra is imported somewhere
(the test extra: by tests/, or it is a tool the test run uses).

Imports are read with ``ast`` (``import x``, ``from x import y``, ``importlib.import_module("x")`` and, in tests,
``pytest.importorskip("x")``, at any
depth: module level, inside functions and ``try`` blocks), so nothing is imported to check them. A module
name maps to its distribution through the installed packages' metadata, or is its own name when the package
is not installed (lpips, xformers).
"""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
FIRST_PARTY = {"cascade", "pipelines"}
IMPORTING_CALLS = ("import_module", "importorskip")  # importlib's, and pytest's in tests/

# Packages an extra installs for a library the project calls, which imports them itself: the extra is used
# when this attribute of the pipelines exists (diffusers' mixins that need the package).
USED_THROUGH = {
    "peft": ("KeyframesPipeline", "load_lora_weights"),  # diffusers' StableDiffusionLoraLoaderMixin
    "xformers": ("KeyframesPipeline", "enable_xformers_memory_efficient_attention"),  # DiffusionPipeline
}
# Packages of the test extra that no test imports: the tools of the test run.
TEST_TOOLS = {
    "pytest": "the test runner",
    "ruff": "lint and format check of .ci/run",
    "ipykernel": "the Python kernel nbclient starts to execute the notebooks",
    "hypothesis": "the property-based bad-input tests of issue 20 (part 5), being written",
    "cascade-video": "the project itself with its app extra",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _imported_modules(folders: list[str]) -> dict[str, set[str]]:
    """``{top-level module: files importing it}`` for the third-party imports of the Python files of
    ``folders`` (relative imports, the standard library and the project's own packages left out)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                elif (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", getattr(node.func, "id", None)) in IMPORTING_CALLS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names = [node.args[0].value]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _distributions(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """``{normalized distribution name: files}`` for ``{module: files}``."""
    installed = importlib.metadata.packages_distributions()
    result: dict[str, set[str]] = {}
    for module, files in modules.items():
        for distribution in installed.get(module, [module]):
            result.setdefault(_normalize(distribution), set()).update(files)
    return result


def _names(requirements: list[str]) -> set[str]:
    return {_normalize(Requirement(line).name) for line in requirements}


CORE = _names(PROJECT["dependencies"])
EXTRAS = {name: _names(lines) for name, lines in PROJECT["optional-dependencies"].items()}
USED = _distributions(_imported_modules(["cascade", "pipelines"]))


def test_the_import_scan_sees_imports_at_every_depth():
    """The scan finds the imports the checks below stand on: a module-level one, one inside a function,
    one through ``importlib.import_module``."""
    assert "cascade/rating/server.py" in USED["fastapi"]  # module level
    assert "cascade/rating/report.py" in USED["matplotlib"]  # inside a function
    assert "cascade/eval/image_quality.py" in USED["lpips"]  # importlib.import_module("lpips")
    assert "torch" in USED and "torch" in CORE


def test_every_optional_import_is_in_an_extra():
    in_extras = set().union(*EXTRAS.values())
    missing = {name: sorted(files) for name, files in USED.items() if name not in CORE | in_extras}
    assert not missing, f"imported, but in no extra of pyproject.toml: {missing}"


@pytest.mark.parametrize("extra", [name for name in EXTRAS if name != "test"])
def test_every_package_of_an_extra_is_used(extra):
    import cascade.pipelines

    for name in EXTRAS[extra]:
        if name in USED:
            continue
        assert name in USED_THROUGH, f"extra {extra!r} installs {name}, which nothing in cascade/ imports"
        pipeline, attribute = USED_THROUGH[name]
        assert hasattr(getattr(cascade.pipelines, pipeline), attribute), (
            f"extra {extra!r} installs {name} for {pipeline}.{attribute}, which does not exist"
        )


def test_every_package_of_the_test_extra_is_used_by_the_tests():
    used = _distributions(_imported_modules(["tests"]))
    unused = EXTRAS["test"] - set(used) - set(TEST_TOOLS)
    assert not unused, f"the test extra installs {sorted(unused)}, which no test imports"
