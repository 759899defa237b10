"""Every install path has the default model and the weights manifest: a wheel carries them as package data
(``cascade/_data/``), a checkout or an editable install reads them at the repository root. CI (``.ci/run``)
also installs the built wheel into a fresh virtual environment and generates from an empty folder."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from cascade.hub.manifest import DEFAULT_MANIFEST, read_manifest
from cascade.pipelines.cascade import DEMO_MODEL
from cascade.utils import package_data

REPO = Path(__file__).resolve().parent.parent
# What a wheel is built from: the project's files (app.py, the Space's entry point, sits at the root too).
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "README.md",
    "app.py",
    "weights_manifest.yaml",
    "cascade",
    "pipelines",
    "weights",
)


def test_a_checkout_reads_the_repository_root():
    assert DEMO_MODEL == REPO / "weights" / "demo" and (DEMO_MODEL / "cascade_index.json").is_file()
    assert DEFAULT_MANIFEST == REPO / "weights_manifest.yaml"
    assert read_manifest(DEFAULT_MANIFEST).entries["demo"].path == DEMO_MODEL


def test_the_packaged_copy_comes_first_and_a_missing_one_is_named(tmp_path, monkeypatch):
    packaged, source = tmp_path / "site-packages" / "cascade" / "_data", tmp_path / "checkout"
    monkeypatch.setattr(package_data, "PACKAGED", packaged)
    monkeypatch.setattr(package_data, "SOURCE", source)
    (source / "weights" / "demo").mkdir(parents=True)
    # No pyproject.toml beside cascade/: an installed package, whose copy is the one to name even if missing.
    assert package_data.shipped_path("weights/demo") == packaged / "weights" / "demo"
    (source / "pyproject.toml").write_text("")
    assert package_data.shipped_path("weights/demo") == source / "weights" / "demo"
    (packaged / "weights" / "demo").mkdir(parents=True)
    assert package_data.shipped_path("weights/demo") == packaged / "weights" / "demo"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a copy of the project's files (so no build output lands in the working tree),
    with this environment's setuptools (no download)."""
    pytest.importorskip("setuptools", minversion="68")  # pyproject.toml's build requirement
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    subprocess.run([*command, str(source)], check=True, capture_output=True)
    (path,) = out.glob("*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_carries_the_demo_model_and_the_manifest(wheel):
    names = set(wheel.namelist())
    demo = sorted(
        path.relative_to(REPO).as_posix()
        for path in DEMO_MODEL.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert demo and {f"cascade/_data/{name}" for name in demo} <= names
    assert "cascade/_data/weights_manifest.yaml" in names
    assert wheel.read("cascade/_data/weights_manifest.yaml") == DEFAULT_MANIFEST.read_bytes()
    for name in demo:
        assert wheel.read(f"cascade/_data/{name}") == (REPO / name).read_bytes(), name
    # Nothing else from the repository root: not app.py, the rest of weights/, tests or docs.
    packaged = {name for name in names if name.startswith("cascade/_data/")}
    assert packaged == {f"cascade/_data/{name}" for name in [*demo, "weights_manifest.yaml"]}


def test_the_wheel_holds_the_package_and_nothing_outside_it(wheel):
    tops = {PurePosixPath(name).parts[0] for name in wheel.namelist()}
    assert "cascade" in tops and [top.endswith(".dist-info") for top in tops - {"cascade"}] == [True]
    names = set(wheel.namelist())
    modules = {
        f"cascade/{path.relative_to(REPO / 'cascade').as_posix()}"
        for path in (REPO / "cascade").rglob("*.py")
    } | {
        f"cascade/pipelines/{path.relative_to(REPO / 'pipelines').as_posix()}"
        for path in (REPO / "pipelines").rglob("*.py")
    }
    assert modules <= names
    assert "cascade/rating/page.html" in names
