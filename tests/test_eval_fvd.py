"""FVD/KVD on I3D features: both protocols' preprocessing, distances and bad input, with tiny TorchScript
detectors built here (no download)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cascade.eval import (
    frechet_distance_from_features,
    fvd,
    i3d_features,
    kernel_distance,
    kvd,
    tf1_resize_bilinear,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:DeprecationWarning")


class TinyI3D(torch.nn.Module):
    """Stand-in with the interface of StyleGAN-V's I3D TorchScript port."""

    def __init__(self, dim: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, kernel_size=3, stride=(2, 8, 8))
        self.fc = torch.nn.Linear(4, dim)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ):
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        logits = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))
        return logits if return_features else logits.softmax(dim=-1)


class ProbeI3D(torch.nn.Module):
    """Returns what it was given: min, max, mean, F, H, W and the three flags."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ):
        count = x.shape[0]
        flags = [1.0 if rescale else 0.0, 1.0 if resize else 0.0, 1.0 if return_features else 0.0]
        columns = [x.amin(dim=(1, 2, 3, 4)), x.amax(dim=(1, 2, 3, 4)), x.mean(dim=(1, 2, 3, 4))]
        for value in [float(x.shape[2]), float(x.shape[3]), float(x.shape[4])] + flags:
            columns.append(torch.full((count,), value))
        return torch.stack(columns, dim=1)


@pytest.fixture(scope="module")
def tiny_detector_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "tiny_i3d.pt"
    torch.jit.script(TinyI3D()).save(str(path))
    return path


@pytest.fixture(scope="module")
def probe_detector():
    return torch.jit.script(ProbeI3D())


def _videos(seed: int, batch: int, frames: int = 10, size: tuple[int, int] = (16, 20), offset: float = 0.0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.uniform(0.0, 1.0, size=(batch, frames, *size, 3)) * (1 - offset) + offset, 0, 1)


def test_tf1_resize_bilinear_matches_hand_computed_legacy_sampling():
    row = torch.tensor([0.0, 1.0, 4.0]).view(1, 1, 1, 3)
    up = tf1_resize_bilinear(row, (1, 6))  # samples at 0, .5, 1, 1.5, 2, 2.5 (clamped to the last pixel)
    assert torch.allclose(up.flatten(), torch.tensor([0.0, 0.5, 1.0, 2.5, 4.0, 4.0]))
    image = torch.rand(2, 3, 448, 448)
    assert torch.equal(tf1_resize_bilinear(image, (224, 224)), image[..., ::2, ::2])
    half_pixel = F.interpolate(row, size=(1, 6), mode="bilinear", align_corners=False)
    assert not torch.allclose(up, half_pixel)


def test_original_protocol_feeds_224x224_frames_in_minus_one_one(probe_detector):
    videos = _videos(0, batch=3)
    videos[0, 0, 0, 0] = 0.0  # sampled exactly by output pixel (0, 0)
    videos[0, 0, 8, 10] = 1.0  # sampled exactly by output pixel (112, 112)
    features = i3d_features(videos, probe_detector, batch_size=2)
    assert features.shape == (3, 9)
    assert features[0, 0] == pytest.approx(-1.0) and features[0, 1] == pytest.approx(1.0)
    np.testing.assert_array_equal(features[:, 3:], [[10, 224, 224, 0, 0, 1]] * 3)
    frames = torch.from_numpy(videos).float().permute(0, 1, 4, 2, 3).flatten(0, 1)  # (30, 3, 16, 20)
    expected_mean = (tf1_resize_bilinear(frames, (224, 224)) * 2 - 1).reshape(3, -1).mean(dim=1)
    np.testing.assert_allclose(features[:, 2], expected_mean.numpy(), rtol=1e-5)


def test_stylegan_v_protocol_feeds_8bit_levels_to_the_detector_resize(probe_detector):
    videos = _videos(1, batch=2)
    features = i3d_features(torch.from_numpy(videos), probe_detector, protocol="stylegan-v")
    np.testing.assert_array_equal(features[:, 3:], [[10, 16, 20, 1, 1, 1]] * 2)
    levels = np.round(videos * 255).reshape(2, -1)
    np.testing.assert_allclose(features[:, 2], levels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(features[:, :2], np.stack([levels.min(1), levels.max(1)], axis=1))


@pytest.mark.parametrize("protocol", ["original", "stylegan-v"])
def test_fvd_and_kvd_are_distances_of_i3d_features(tiny_detector_path, protocol):
    real, generated = _videos(2, batch=6), _videos(3, batch=5, offset=0.5)
    real_features = i3d_features(real, tiny_detector_path, protocol=protocol)
    generated_features = i3d_features(generated, tiny_detector_path, protocol=protocol)
    assert real_features.shape == (6, 3)
    expected = frechet_distance_from_features(real_features, generated_features)
    assert fvd(real, generated, tiny_detector_path, protocol=protocol) == pytest.approx(expected, rel=1e-9)
    assert expected > 0
    expected_kvd = kernel_distance(real_features, generated_features, num_subsets=4, subset_size=4, seed=3)
    result = kvd(real, generated, tiny_detector_path, protocol=protocol, num_subsets=4, subset_size=4, seed=3)
    assert result == pytest.approx(expected_kvd, rel=1e-9)


def test_fvd_accepts_uint8_and_a_loaded_module(tiny_detector_path):
    real = (_videos(4, batch=4) * 255).round().astype(np.uint8)
    generated = (_videos(5, batch=4, offset=0.3) * 255).round().astype(np.uint8)
    module = torch.jit.load(str(tiny_detector_path))
    from_uint8 = fvd(real, generated, module)
    from_float = fvd(real / 255.0, torch.from_numpy(generated).float() / 255, tiny_detector_path)
    assert from_uint8 == pytest.approx(from_float, rel=1e-5)


def test_fvd_warns_with_fewer_clips_than_feature_dimensions(tiny_detector_path):
    with pytest.warns(UserWarning, match="2 samples for 3 feature dimensions"):
        fvd(_videos(6, batch=2), _videos(7, batch=3), tiny_detector_path)


@pytest.mark.parametrize(
    ("real", "generated", "kwargs", "match"),
    [
        (
            _videos(0, 3, frames=9),
            _videos(1, 3, frames=9),
            {},
            "real_videos must have at least 10 frames per video; got 9",
        ),
        (
            _videos(0, 3),
            _videos(1, 3, frames=12),
            {},
            r"same clip shape .*\(3, 10, 16, 20, 3\) and \(3, 12, 16, 20",
        ),
        (_videos(0, 3), _videos(1, 3, size=(16, 16)), {}, "same clip shape"),
        (
            _videos(0, 3),
            _videos(1, 3),
            {"protocol": "tf"},
            r"`protocol` must be one of \['original', 'stylegan-v'\]",
        ),
        (_videos(0, 3), _videos(1, 3), {"batch_size": 0}, "`batch_size` must be a positive int, got 0"),
        (_videos(0, 3), _videos(1, 3) * 2, {}, "generated_videos values must lie in"),
    ],
)
def test_fvd_rejects_bad_input(tiny_detector_path, real, generated, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fvd(real, generated, tiny_detector_path, **kwargs)


def test_fvd_rejects_detector_with_wrong_output(tmp_path):
    with pytest.raises(ValueError, match=r"detector must return a \(2, D\) tensor"):
        i3d_features(_videos(0, 2), lambda x, **kwargs: x.mean(dim=(2, 3, 4)).flatten())
    with pytest.raises(ValueError, match="source must be an existing TorchScript file"):
        fvd(_videos(0, 2), _videos(1, 2), tmp_path / "missing.pt")
