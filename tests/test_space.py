"""scripts/make_space.py: the Hugging Face Space's folder it assembles, its README's front matter, its
requirements.txt against pyproject.toml, and app.py run from the folder with the folder's own cascade/ (not the
installed package) and the demo cascade, as a Space runs it (without launching the server)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_space.py"
STAGES = ["keyframes", "interpolation", "spatiotemporal_sr", "spatial_sr"]


def load_script():
    spec = importlib.util.spec_from_file_location("make_space", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(tmp: Path) -> dict:
    """The environment of a Space's process: no PYTHONPATH, one torch thread, gradio's files under ``tmp``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        OMP_NUM_THREADS="1", GRADIO_TEMP_DIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1"
    )
    return env


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The Space's folder, written by the script's command line."""
    out = tmp_path_factory.mktemp("built") / "space"
    env = clean_env(tmp_path_factory.mktemp("gradio"))
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, env=env, cwd=out.parent, timeout=120)
    return out


def files_under(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_space_folder_layout(space):
    pyproject = load_script().read_pyproject()
    assert (space / "app.py").read_text() == (REPO / "app.py").read_text()
    package = files_under(space / "cascade")
    assert files_under(REPO / "cascade") <= package
    assert {f"pipelines/{name}" for name in files_under(REPO / "pipelines")} <= package
    assert files_under(space / "weights" / "demo") == files_under(REPO / "weights" / "demo")
    assert not list(space.rglob("__pycache__"))
    assert "*.safetensors filter=lfs" in (space / ".gitattributes").read_text()

    text = (space / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    config = yaml.safe_load(text.split("---\n")[1])
    assert config["sdk"] == "gradio" and config["app_file"] == "app.py"
    app_extra = map(Requirement, pyproject["project"]["optional-dependencies"]["app"])
    gradio = next(r for r in app_extra if r.name == "gradio")
    assert gradio.specifier.contains(config["sdk_version"])
    assert isinstance(config["python_version"], str)  # 3.10 unquoted would read as the float 3.1
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(config["python_version"] + ".0")
    assert len(config["short_description"]) <= 60  # the Hub's limit
    assert not (REPO / "README.md").read_text().startswith("---")  # the project's README has no front matter


def test_requirements_are_pyprojects_dependencies_and_app_extra(space):
    project = load_script().read_pyproject()["project"]
    lines = (space / "requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith(("#", "-"))]
    assert requirements == [*project["dependencies"], *project["optional-dependencies"]["app"]]
    assert all(Requirement(line).name != project["name"] for line in requirements)  # the package is cascade/
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines


def test_app_runs_from_the_space_folder_with_its_own_package(space, tmp_path):
    """``import app`` loads the demo cascade and builds the gradio app (no server) with every ``cascade``
    module loaded from the Space's folder, ``cascade.pipelines`` included: the installed package (editable,
    pointing at this repository) is not used."""
    code = """
import json, sys
import app
import cascade, cascade.pipelines
files = {name: module.__file__ for name, module in sys.modules.items()
         if name == "cascade" or name.startswith("cascade.")}
print(json.dumps({"files": files, "demo": type(app.demo).__name__, "stages": list(app.cascade.stages),
                  "model": str(app.MODEL)}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=space,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    root = space.resolve()
    assert Path(found["files"]["cascade"]) == root / "cascade" / "__init__.py"
    assert Path(found["files"]["cascade.pipelines"]) == root / "cascade" / "pipelines" / "__init__.py"
    assert "cascade.pipelines.cascade" in found["files"] and "cascade.app.ui" in found["files"]
    outside = {
        name: file for name, file in found["files"].items() if root not in Path(file).resolve().parents
    }
    assert not outside
    assert Path(found["model"]) == root / "weights" / "demo"
    assert found["demo"] == "Blocks" and found["stages"] == STAGES


def test_assembling_again_replaces_the_folder(tmp_path):
    make_space = load_script()
    out = tmp_path / "space"
    make_space.assemble(out, sdk_version="6.31.0")
    (out / "stale.txt").write_text("left from an older build")
    assert make_space.assemble(out, sdk_version="6.31.0") == out.resolve()
    assert not (out / "stale.txt").exists() and (out / "app.py").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["space"]  # no partial or previous folder left
    with pytest.raises(SystemExit, match="inside the repository"):
        make_space.assemble(REPO / "space")
    with pytest.raises(SystemExit, match="outside the app extra"):
        make_space.assemble(tmp_path / "other", sdk_version="5.0.0")
    assert not (tmp_path / "other").exists()
