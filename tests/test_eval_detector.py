"""TorchScript detector loading: pinned SHA-256 verification, atomic cache, no real network access (the
downloads are ``file://`` URLs through ``torch.hub.download_url_to_file``)."""

import hashlib

import numpy as np
import pytest
import torch

import cascade.eval.detector as detector_module
from cascade.eval import I3D_SHA256, fvd, load_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.fixture
def scripted_file(tmp_path):
    path = tmp_path / "source" / "tiny.pt"
    path.parent.mkdir()
    torch.jit.script(Doubler()).save(str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_with_matching_sha256_is_cached_and_reused(tmp_path, scripted_file, monkeypatch):
    path, digest = scripted_file
    cache = tmp_path / "cache"
    module = load_torchscript(path.as_uri(), sha256=digest, cache_dir=cache)
    assert torch.equal(module(torch.ones(2)), torch.full((2,), 2.0))
    assert [p.name for p in cache.iterdir()] == ["tiny.pt"]

    def no_network(url, destination, **options):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(detector_module, "download_url_to_file", no_network)
    assert torch.equal(
        load_torchscript(path.as_uri(), sha256=digest, cache_dir=cache)(torch.ones(1)), torch.ones(1) * 2
    )


def test_download_with_wrong_sha256_raises_and_deletes_the_file(tmp_path, scripted_file):
    path, digest = scripted_file
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f'does not have the pinned sha256 {wrong} .*got "{digest}"'):
        load_torchscript(path.as_uri(), sha256=wrong, cache_dir=cache)
    assert list(cache.iterdir()) == []  # no partial file either


def test_corrupt_cache_entry_is_fetched_again(tmp_path, scripted_file):
    path, digest = scripted_file
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.pt").write_bytes(b"truncated")
    load_torchscript(path.as_uri(), sha256=digest, cache_dir=cache)
    assert hashlib.sha256((cache / "tiny.pt").read_bytes()).hexdigest() == digest


def test_default_i3d_download_is_verified_against_the_pinned_sha256(tmp_path, scripted_file, monkeypatch):
    path, digest = scripted_file
    fetched = []
    download = detector_module.download_url_to_file

    def local_download(url, destination, **options):  # serves a local file for the URL; checks run as ever
        fetched.append((url, options["hash_prefix"]))
        download(path.as_uri(), destination, **options)

    monkeypatch.setattr(detector_module, "download_url_to_file", local_download)
    videos = np.zeros((2, 10, 8, 8, 3))
    with pytest.raises(ValueError, match=f'pinned sha256 {I3D_SHA256} .*got "{digest}"'):
        fvd(videos, videos, cache_dir=tmp_path / "cache")
    assert fetched == [(detector_module.I3D_URL, I3D_SHA256)]
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_torchscript_rejects_bad_arguments(tmp_path, scripted_file):
    path, digest = scripted_file
    with pytest.raises(ValueError, match="sha256 is required to download"):
        load_torchscript(path.as_uri())
    with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits; got 'abc'"):
        load_torchscript(path.as_uri(), sha256="abc", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="source must be an existing TorchScript file"):
        load_torchscript(tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match=f"sha256 of .*tiny.pt is {digest}, expected {'1' * 64}"):
        load_torchscript(path, sha256="1" * 64)
    assert path.is_file()  # a user's local file is never deleted
    assert torch.equal(load_torchscript(path, sha256=digest)(torch.ones(1)), torch.full((1,), 2.0))
