"""Long keyframes coarse to fine (issue 18): coarse frames spread over the video, then the frames between
them from their blend (cascade.pipelines.coarse_to_fine and KeyframesPipeline's long_video_method)."""

import numpy as np
import pytest
import torch
from test_known_frames import PROMPT, first_frame, generate, make_pipeline  # noqa: F401 (conftest's fixtures)

from cascade.pipelines.coarse_to_fine import blend_between, coarse_positions


def test_coarse_positions_spread_a_window_over_the_video_with_both_ends():
    assert coarse_positions(64, 8) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert coarse_positions(10, 4) == [0, 3, 6, 9]
    assert coarse_positions(11, 4) == [0, 3, 7, 10]  # round(10/3), round(20/3)
    assert coarse_positions(5, 8) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="`window`"):
        coarse_positions(10, 1)


def test_the_blend_is_the_coarse_frames_at_their_positions_and_linear_between():
    positions = [0, 3, 7, 10]
    coarse = torch.randn(2, 3, 4, 5, 6, generator=torch.Generator().manual_seed(0))  # (B, C, K, h, w)
    blend = blend_between(coarse, positions, 11)  # (B, C, 11, h, w)
    assert blend.shape == (2, 3, 11, 5, 6)
    values = coarse.permute(0, 1, 3, 4, 2).reshape(-1, 4).numpy()  # (pixels, K)
    expected = np.stack([np.interp(np.arange(11), positions, row) for row in values])  # (pixels, 11)
    np.testing.assert_allclose(blend.permute(0, 1, 3, 4, 2).reshape(-1, 11).numpy(), expected, atol=1e-6)
    assert torch.equal(blend[:, :, positions], coarse)


@pytest.mark.parametrize(
    "positions, frames, message",
    [
        ([0, 3, 10], 11, r"K = len\(positions\) = 3"),
        ([1, 3, 7, 10], 11, "must increase from 0"),
        ([0, 3, 7, 9], 11, "to num_frames - 1 = 10"),
        ([0, 7, 3, 10], 11, "must increase"),
    ],
)
def test_the_blend_rejects_positions_that_do_not_span_the_video(positions, frames, message):
    with pytest.raises(ValueError, match=message):
        blend_between(torch.zeros(1, 3, 4, 2, 2), positions, frames)


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_coarse_frames_are_a_plain_window_on_the_noise_at_their_positions(space, pixel_pipe, latent_pipe):
    pipe = pixel_pipe if space == "pixel" else latent_pipe
    shape = pipe.latents_shape(1, 10, pipe.default_size, pipe.default_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))  # (1, C, 10, h, w)
    samples = []
    settings = {"num_inference_steps": 4, "output_type": "latent"}
    video = pipe(
        PROMPT,
        num_frames=10,
        window=4,
        window_overlap=2,
        long_video_method="coarse_to_fine",
        fill_strength=0.5,
        latents=noise,
        callback_on_step_end=lambda p, i, t, tensors: samples.append(tensors["latents"].clone()) or {},
        **settings,
    ).frames  # (1, C, 10, h, w)
    # 4 coarse steps on 4 frames, then the last half of the schedule (2 steps) on all 10
    assert [s.shape[2] for s in samples] == [4] * 4 + [10] * 2
    plain = pipe(PROMPT, num_frames=4, latents=noise[:, :, [0, 3, 6, 9]], **settings).frames
    torch.testing.assert_close(samples[3], plain, atol=1e-6, rtol=0)
    assert video.shape == shape
    # the fill changes the frames between the coarse ones and refines the coarse ones without moving them far
    blend = blend_between(plain, [0, 3, 6, 9], 10)
    assert (video - blend)[:, :, [1, 2, 4, 5, 7, 8]].abs().max() > 1e-3


def test_a_video_no_longer_than_the_window_is_one_plain_call(pixel_pipe):
    plain = generate(pixel_pipe, num_frames=5, output_type="latent")
    same = generate(
        pixel_pipe, num_frames=5, window=8, long_video_method="coarse_to_fine", output_type="latent"
    )
    assert torch.equal(same, plain)


@pytest.mark.parametrize("method", ["reconstruction", "replacement"])
def test_image_to_video_coarse_to_fine_keeps_the_image_first(pixel_pipe, method):
    image = first_frame(pixel_pipe)
    frames = generate(
        pixel_pipe,
        num_frames=9,
        window=4,
        window_overlap=2,
        long_video_method="coarse_to_fine",
        image=image,
        conditioning_method=method,
    )  # (1, 9, 3, H, W)
    assert frames.shape[:2] == (1, 9)
    torch.testing.assert_close(frames[0, 0], image, atol=1e-6, rtol=0)


def test_the_progress_bar_counts_the_coarse_and_the_fill_steps(pixel_pipe):
    totals = []
    original = pixel_pipe.progress_bar

    def counting(*args, **kwargs):
        totals.append(kwargs.get("total"))
        return original(*args, **kwargs)

    pixel_pipe.progress_bar = counting
    try:
        generate(
            pixel_pipe,
            num_frames=9,
            window=4,
            long_video_method="coarse_to_fine",
            fill_strength=0.4,
            num_inference_steps=5,
        )
    finally:
        del pixel_pipe.progress_bar
    assert totals == [5 + 2]  # one bar: 5 coarse steps, then the last 2 (int(5 * 0.4)) on every frame
