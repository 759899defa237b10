"""Loading TorchScript feature detectors from a local file or a URL cached with a pinned SHA-256.

Downloads go through ``torch.hub.download_url_to_file`` with the pinned digest as its ``hash_prefix``: it
writes a temporary file beside the target, checks the SHA-256 and only then moves the file into place, so
the cache never holds a partial or unverified file. A checksum mismatch deletes the download and raises
``ValueError``.
"""

import hashlib
import os
import re
import urllib.parse
import warnings
from pathlib import Path

import torch
from torch.hub import download_url_to_file

# The Kinetics-400 I3D TorchScript port of StyleGAN-V (Skorokhodov et al. 2022), numerically equivalent to
# the tf.hub ``i3d-kinetics-400/1`` model of the original FVD code. 51,235,320 bytes.
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
I3D_SHA256 = "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2"

_URL_SCHEMES = ("http", "https", "file")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def default_cache_dir() -> Path:
    """``$CASCADE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/cascade/eval`` (``~/.cache/cascade/eval``)."""
    if os.environ.get("CASCADE_CACHE_DIR"):
        return Path(os.environ["CASCADE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cascade" / "eval"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_download(url: str, sha256: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of ``url``'s file in ``cache_dir``, downloading it if absent or corrupt.

    A cached file whose digest differs from ``sha256`` is deleted and fetched again; a fresh download whose
    digest differs is deleted by ``torch.hub.download_url_to_file`` and ``ValueError`` is raised.
    """
    if not isinstance(sha256, str) or not _SHA256_PATTERN.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits; got {sha256!r}")
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = directory / name
    if target.is_file():
        if file_sha256(target) == sha256:
            return target
        target.unlink()
    try:
        download_url_to_file(url, str(target), hash_prefix=sha256, progress=True)
    except RuntimeError as error:
        if not str(error).startswith("invalid hash value"):
            raise
        raise ValueError(
            f"the file downloaded from {url} does not have the pinned sha256 {sha256} ({error}); "
            "the download was deleted"
        ) from error
    return target


def load_torchscript(
    source: str | os.PathLike,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.jit.ScriptModule:
    """Load a TorchScript module in eval mode from a local path or an ``http(s)://`` / ``file://`` URL.

    Args:
        source: local file path, or URL downloaded through :func:`cached_download`.
        sha256: expected digest; required for URLs. For a local path it is checked when given (a mismatch
            raises ``ValueError`` and leaves the user's file alone).
        cache_dir: download cache (default :func:`default_cache_dir`).
        device: where the module's tensors are mapped.
    """
    if not isinstance(source, str | os.PathLike):
        raise ValueError(f"source must be a path or URL string; got {type(source).__name__}")
    location = os.fspath(source)
    if urllib.parse.urlparse(location).scheme in _URL_SCHEMES:
        if sha256 is None:
            raise ValueError(f"sha256 is required to download {location}; got None")
        path = cached_download(location, sha256, cache_dir)
    else:
        path = Path(location)
        if not path.is_file():
            raise ValueError(f"source must be an existing TorchScript file or a URL; got {location!r}")
        if sha256 is not None and file_sha256(path) != sha256:
            raise ValueError(f"sha256 of {location} is {file_sha256(path)}, expected {sha256}")
    with warnings.catch_warnings():  # published detectors are TorchScript; torch >= 2.10 flags the format
        warnings.filterwarnings(
            "ignore", message="`torch.jit.load` is deprecated", category=DeprecationWarning
        )
        return torch.jit.load(str(path), map_location=device).eval()
