"""Files the package ships beside its code: the demo cascade (``weights/demo``) and the weights manifest
(``weights_manifest.yaml``).

In the repository they sit at its root, where the docs, recipes and tests use them; a source checkout and an
editable install (``pip install -e .``) read them there. A wheel (``pip install .``, ``pip install
git+URL``, a built ``.whl``) carries a copy inside the package, under ``cascade/_data/`` with the same
relative layout (pyproject.toml maps the package ``cascade._data`` to the repository root and lists the
files as its package data), so the manifest's ``weights/demo``, relative to the manifest, holds there too.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the installed (or checked-out) cascade/ folder
PACKAGED = PACKAGE / "_data"  # the copy a wheel installs
SOURCE = PACKAGE.parent  # the repository root, in a source checkout or an editable install


def shipped_path(relative: str) -> Path:
    """The path of ``relative`` (POSIX, relative to the repository root, e.g. ``"weights/demo"``): the
    wheel's copy under ``cascade/_data/`` when it exists, else the source tree's; when neither exists, the
    wheel's path unless the source tree is there, so an error names the place it was looked for."""
    packaged, source = PACKAGED / relative, SOURCE / relative
    if packaged.exists() or not (SOURCE / "pyproject.toml").is_file():
        return packaged
    return source
