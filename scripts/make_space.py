"""Assembles a Hugging Face Space (gradio SDK) that runs ``app.py`` with the demo cascade (docs/space.md).

    python scripts/make_space.py [OUT]          # default: dist/space (ignored by git)

A Space needs what this repository cannot give it as it stands, so the folder is built, not the repository
pushed: a README.md with the Space's YAML front matter (the project's README keeps none); a requirements.txt
without the package itself (a Space installs it before the repository's files are there), its ranges read
from pyproject.toml (the dependencies and the ``app`` extra) so they cannot drift; the package's source with
``pipelines/`` placed as ``cascade/pipelines/`` (what pyproject's package-dir does on install), so that
``import cascade`` from the Space's folder is complete without installing anything; app.py; weights/demo.
The folder is written atomically: built under a hidden name beside OUT, then renamed into place.
"""

import argparse
import shutil
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cascade.utils.atomic import write_folder_atomically

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "dist" / "space"
WEIGHTS = Path("weights", "demo")
# The app computes on CPU (a free Space's hardware): torch's CPU wheels, not PyPI's build with its GBs of CUDA
# libraries. pip prefers the index's "+cpu" versions, which sort after the same public version.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTHON_VERSION = "3.11"  # the Python the test suite runs on (pyproject: >= 3.10)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def read_pyproject(repo: Path = REPO) -> dict:
    return tomllib.loads((repo / "pyproject.toml").read_text())


def space_requirements(pyproject: dict) -> list[str]:
    """The project's dependencies, then its ``app`` extra's, as pyproject writes them; a requirement on the
    project itself (an extra naming another) and a second one of the same name are left out."""
    project = pyproject["project"]
    own, seen, found = canonicalize_name(project["name"]), set(), []
    for line in [*project["dependencies"], *project["optional-dependencies"]["app"]]:
        name = canonicalize_name(Requirement(line).name)
        if name != own and name not in seen:
            seen.add(name)
            found.append(line)
    return found


def gradio_version(pyproject: dict, requested: str | None = None) -> str:
    """``requested``, else the installed gradio (the version the app was tested with); it must be in the app
    extra's range, since the Space installs ``gradio==sdk_version`` as well as requirements.txt."""
    app_extra = map(Requirement, pyproject["project"]["optional-dependencies"]["app"])
    spec = next(r for r in app_extra if r.name == "gradio")
    try:
        version = requested or metadata.version("gradio")
    except metadata.PackageNotFoundError:
        raise SystemExit(
            f"gradio is not installed; install the app extra ({spec}) or pass --sdk-version"
        ) from None
    if not spec.specifier.contains(version):
        raise SystemExit(f"gradio {version} is outside the app extra's {spec}")
    return version


def requirements_text(pyproject: dict) -> str:
    lines = [
        f"# Written by scripts/make_space.py from pyproject.toml ({pyproject['project']['name']}"
        f" {pyproject['project']['version']}): its dependencies and its `app` extra.",
        "# Not the package itself: a Space installs this file before its files are there; the package's",
        "# source is the cascade/ folder beside app.py.",
        "# The app runs on CPU: torch's CPU wheels instead of PyPI's CUDA build (GBs of CUDA libraries).",
        f"--extra-index-url {TORCH_CPU_INDEX}",
        *space_requirements(pyproject),
    ]
    return "\n".join(lines) + "\n"


def readme_text(pyproject: dict, sdk_version: str, title: str) -> str:
    license = pyproject["project"]["license"]  # {text = "Apache-2.0"}, or a bare SPDX string (PEP 639)
    license_id = (license["text"] if isinstance(license, dict) else license).lower()
    return f"""---
title: {title}
emoji: 🎬
colorFrom: indigo
colorTo: pink
sdk: gradio
sdk_version: {sdk_version}
python_version: "{PYTHON_VERSION}"
app_file: app.py
pinned: false
license: {license_id}
short_description: Cascaded text-to-video, a tiny demo cascade on CPU
tags:
  - text-to-video
  - diffusers
---

# {title}

A cascaded text-to-video model built on diffusers: keyframes, frame interpolation, spatiotemporal and spatial
super-resolution, each stage a text-to-image UNet inflated with temporal layers. This Space runs the **demo
cascade** (35 MB, trained on a 2-core CPU on a synthetic world of coloured shapes): 8 keyframes of 16x16 ->
29 frames -> 32x32 -> 64x64, small enough for a free CPU Space.

Prompts read `a <colour> <shape> moving <direction>`: colours red, green, blue, yellow, magenta, cyan, white;
shapes circle, square, triangle; directions left, right, up, down. Each stage's frames appear as it finishes,
beside the world's renderer's clip of the prompt (its ground truth). The Edit tab edits an uploaded video.

Assembled by `scripts/make_space.py` of the project's repository ({pyproject["project"]["name"]}
{pyproject["project"]["version"]}); `cascade/` is the package's source, `weights/demo` the cascade.
"""


GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def assemble(
    out: Path = DEFAULT_OUT, repo: Path = REPO, sdk_version: str | None = None, title: str = "Cascade"
) -> Path:
    """Writes the Space's folder to ``out`` (replacing it, atomically) and returns it."""
    pyproject = read_pyproject(repo)
    sdk_version = gradio_version(pyproject, sdk_version)
    out = Path(out).resolve()
    if out == repo or (repo in out.parents and not out.is_relative_to(repo / "dist")):
        raise SystemExit(f"{out} is inside the repository; write the Space under dist/ or outside it")

    def write(folder: Path) -> None:
        (folder / "README.md").write_text(readme_text(pyproject, sdk_version, title), encoding="utf-8")
        (folder / "requirements.txt").write_text(requirements_text(pyproject))
        (folder / ".gitattributes").write_text(GITATTRIBUTES)  # for a git push: weights through LFS / Xet
        shutil.copy2(repo / "app.py", folder / "app.py")
        shutil.copytree(repo / "cascade", folder / "cascade", ignore=IGNORE)
        shutil.copytree(repo / "pipelines", folder / "cascade" / "pipelines", ignore=IGNORE)
        shutil.copytree(repo / WEIGHTS, folder / WEIGHTS, ignore=IGNORE)

    return write_folder_atomically(out, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "out", nargs="?", type=Path, default=DEFAULT_OUT, help="the Space's folder (default: dist/space)"
    )
    parser.add_argument("--title", default="Cascade", help="the Space's title (default: Cascade)")
    parser.add_argument("--sdk-version", help="gradio version the Space runs (default: the installed gradio)")
    args = parser.parse_args(argv)
    out = assemble(args.out, sdk_version=args.sdk_version, title=args.title)
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
