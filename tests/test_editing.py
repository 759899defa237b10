"""DDIM inversion and editing (cascade.pipelines.editing), self-attention injection, and fitting a user's video
to a stage: exact round trips, the injection's identities, shapes in pixel and latent space, eps and v
prediction, and bad input refused before any model runs."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from PIL import Image

from cascade import CascadePipeline, KeyframesPipeline
from cascade.cli import main
from cascade.data.video_fit import fit_video, read_video_input
from cascade.models.attention_injection import self_attention_injection
from cascade.pipelines.stages import STAGE_NAMES
from cascade.testing.tiny_models import (
    tiny_cascade_stages,
    tiny_interpolation_components,
    tiny_keyframes_components,
)


def make_pipeline(latent=False, prediction_type="epsilon", silent=False):
    """A tiny keyframes pipeline; ``silent``: its UNet predicts zero, so DDIM and its inverse are exact
    inverses (each step scales the sample by a ratio of the schedule's alphas)."""
    components = tiny_keyframes_components(latent=latent)
    components["scheduler"] = DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    if silent:
        torch.nn.init.zeros_(components["unet"].unet.conv_out.weight)
        torch.nn.init.zeros_(components["unet"].unet.conv_out.bias)
    pipe = KeyframesPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clip(frames=3, size=8, batch=1, seed=0):
    """Frames ``(B, F, H, W, 3)`` in [0, 1]."""
    return np.random.default_rng(seed).random((batch, frames, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize("method", ["inversion", "plain_inversion"])
def test_inverting_then_regenerating_with_the_source_prompt_gives_the_video_back(method):
    pipe = make_pipeline(silent=True)
    video = clip()
    edited = pipe.edit(video, "a red circle", "a red circle", method=method, num_inference_steps=6).frames
    np.testing.assert_allclose(edited, video, atol=1e-4)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_an_edit_to_the_source_prompt_gives_the_video_back_for_any_model(guidance_scale):
    # A trained-looking (random, not silent) model reconstructs only approximately, but the target branch gets
    # the source branch's corrections, so with one prompt for both it ends on the clip itself.
    pipe = make_pipeline()
    video = clip(batch=2)
    edited = pipe.edit(
        video, "a red circle", "a red circle", num_inference_steps=5, guidance_scale=guidance_scale
    ).frames
    np.testing.assert_allclose(edited, video, atol=1e-4)
    plain = pipe.edit(video, "a red circle", "a red circle", method="plain_inversion", num_inference_steps=5)
    assert np.abs(plain.frames - video).max() > 1e-2  # the uncorrected regeneration drifts


def test_inversion_with_a_strength_stops_part_of_the_way_up():
    pipe = make_pipeline(silent=True)
    video = clip()
    full = pipe.invert(video, num_inference_steps=10)
    part = pipe.invert(video, num_inference_steps=10, strength=0.4)
    assert part.trajectory.shape[0] == 4 and torch.equal(part.timesteps, full.timesteps[:4])
    torch.testing.assert_close(part.latents, full.trajectory[3])
    edited = pipe.edit(video, "a", "a", method="plain_inversion", num_inference_steps=10, strength=0.4)
    np.testing.assert_allclose(edited.frames, video, atol=1e-4)


@pytest.mark.parametrize("latent", [False, True], ids=["pixel", "latent"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inversion_returns_the_noise_and_its_trajectory(latent, prediction_type):
    pipe = make_pipeline(latent=latent, prediction_type=prediction_type)
    video = clip(size=8 * pipe.vae_scale_factor, batch=2)
    inversion = pipe.invert(video, ["a red circle", "a blue square"], num_inference_steps=4)
    shape = (2, pipe.unet.in_channels, 3, 8, 8)
    assert inversion.latents.shape == shape and inversion.trajectory.shape == (4, *shape)
    assert torch.equal(inversion.trajectory[-1], inversion.latents)
    assert inversion.timesteps.tolist() == sorted(inversion.timesteps.tolist())  # from clean towards noise
    assert inversion.latents.std() > inversion.trajectory[0].std() * 0.5  # it is noise, not the clip


def test_a_silent_models_inversion_scales_the_clip_by_the_schedule():
    pipe = make_pipeline(silent=True)
    video = clip()
    inversion = pipe.invert(video, "", num_inference_steps=5)
    alphas = pipe.scheduler.alphas_cumprod
    last = int(inversion.timesteps[-1])
    expected = torch.from_numpy(video).permute(0, 4, 1, 2, 3) * 2 - 1  # (B, 3, F, H, W) in [-1, 1]
    torch.testing.assert_close(inversion.latents, expected * alphas[last].sqrt(), atol=1e-5, rtol=1e-4)


def test_self_attention_injection_is_the_identity_when_source_and_target_are_one():
    pipe = make_pipeline()
    sample, text = torch.randn(1, 3, 3, 8, 8), torch.randn(1, 16, 32)  # (B, C, F, H, W), (B, L, D)
    other = torch.randn(1, 3, 3, 8, 8)
    with torch.no_grad():
        plain = pipe.unet(sample, 500, text).sample
        plain_other = pipe.unet(other, 500, text).sample
        with self_attention_injection(pipe.unet, groups=1):
            same = pipe.unet(torch.cat([sample, sample]), 500, torch.cat([text, text])).sample
            mixed = pipe.unet(torch.cat([sample, other]), 500, torch.cat([text, text])).sample
        after = pipe.unet(sample, 500, text).sample
    torch.testing.assert_close(same, torch.cat([plain, plain]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[:1], plain, atol=1e-5, rtol=1e-5)  # the source is not touched
    assert (mixed[1:] - plain_other).abs().max() > 1e-4  # the target attends like the source
    assert torch.equal(after, plain)  # the processors are restored


@pytest.mark.parametrize("method", ["inversion", "plain_inversion", "sdedit"])
def test_every_method_edits_a_batch_with_guidance(method):
    pipe = make_pipeline()
    edited = pipe.edit(
        clip(batch=2), ["a blue circle", "a red square"], "a shape", method=method, num_inference_steps=3
    ).frames
    assert edited.shape == (2, 3, 8, 8, 3) and edited.min() >= 0 and edited.max() <= 1


@pytest.mark.parametrize("method, strength", [("inversion", 0.5), ("plain_inversion", 1.0), ("sdedit", 0.5)])
def test_an_edit_shows_one_progress_bar_counting_every_step(method, strength):
    pipe = make_pipeline()
    bars = []
    original = pipe.progress_bar

    def counting(*args, **kwargs):
        bar, entry = original(*args, **kwargs), [kwargs.get("total"), 0]
        update = bar.update

        def counted(n=1):
            entry[1] += n
            return update(n)

        bar.update = counted
        bars.append(entry)
        return bar

    pipe.progress_bar = counting
    pipe.edit(
        clip(), "a blue circle", "a red circle", method=method, num_inference_steps=4, strength=strength
    )
    run = round(4 * strength)  # steps inverted, then as many regenerated; SDEdit only regenerates
    assert [tuple(entry) for entry in bars] == [(run if method == "sdedit" else 2 * run,) * 2]


def test_the_cascade_edits_any_size_and_length_to_its_own_output():
    cascade = CascadePipeline(**tiny_cascade_stages())
    cascade.set_progress_bar_config(disable=True)
    fast = {name: {"num_inference_steps": 1} for name in cascade.stages if name != "keyframes"}
    result = cascade.edit(
        clip(frames=7, size=12),
        "a blue circle",
        num_frames=3,
        stage_kwargs=fast,
        num_inference_steps=2,
        return_stage_outputs=True,
    )
    assert result.frames.shape == (1, 9, 128, 128, 3)  # 3 keyframes of 8x8 -> 9 frames -> 128x128
    assert result.stage_frames["keyframes"].shape == (1, 3, 3, 8, 8)


def test_the_cascade_edit_takes_a_generator_as_its_call_does():
    cascade = CascadePipeline(**tiny_cascade_stages()).subset(["keyframes", "interpolation"])
    cascade.set_progress_bar_config(disable=True)

    def edit(generator, **kwargs):
        settings = {"num_frames": 3, "method": "sdedit", "num_inference_steps": 2, "output_type": "pt"}
        return cascade.edit(clip(frames=5), "a blue circle", generator=generator, **settings, **kwargs).frames

    first = edit(torch.Generator().manual_seed(3))
    assert torch.equal(edit(torch.Generator().manual_seed(3)), first)  # the same state, the same video
    assert not torch.equal(edit(torch.Generator().manual_seed(4)), first)
    with pytest.raises(ValueError, match="Give `seed` or `generator`, not both"):
        edit(torch.Generator(), seed=1)
    with pytest.raises(ValueError, match="`generator`"):
        edit([torch.Generator(), torch.Generator()])  # two for one clip


def test_fit_video_samples_evenly_and_crops_the_center():
    frames = np.zeros((9, 20, 40, 3), dtype=np.uint8)
    frames[:, :, 6:34] = 255  # a white band wider than the middle half
    for index in range(9):
        frames[index, 0, 0] = index  # the frame's index, in a corner the crop removes
    fitted = fit_video(frames, 3, 10, 10)
    assert fitted.shape == (3, 10, 10, 3) and fitted.dtype == np.float32
    assert fitted.min() > 0.99  # only the white middle is left
    corners = fit_video(frames, 5, 20, 40)[:, 0, 0, 0]  # at its own size nothing is resized
    np.testing.assert_allclose(corners, [i / 255 for i in (0, 2, 4, 6, 8)], atol=1e-6)


def test_read_video_input_reads_files_and_folders_and_refuses_bad_ones(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((6, 8, 3), index * 40, dtype=np.uint8)).save(folder / f"{index:02d}.png")
    frames = read_video_input(folder)
    assert frames.shape == (3, 6, 8, 3) and frames[:, 0, 0, 0].tolist() == [0, 40, 80]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="is a folder with no images"):
        read_video_input(empty)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        read_video_input(broken)
    with pytest.raises(ValueError, match="is neither a video file nor a folder"):
        read_video_input(tmp_path / "missing.mp4")


def _models_must_not_run(pipe):
    def fail(*args, **kwargs):
        raise AssertionError("a model ran before the input was checked")

    return [m.register_forward_pre_hook(fail) for m in (pipe.unet, pipe.text_encoder)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"method": "null_text"}, r"`method` must be one of \['inversion', 'plain_inversion', 'sdedit'\]"),
        ({"attention_injection": 1.5}, r"`attention_injection` must be a number in \[0.0, 1.0\], got 1.5"),
        ({"strength": 0}, r"`strength` must be a number in \(0.0, 1.0\], got 0"),
        ({"num_inference_steps": 0}, r"`num_inference_steps` must be a positive int, got 0"),
        ({"prompt": ["a", "b"]}, r"`prompt` must be a str or a list of 1 str \(one per video\)"),
        ({"source_prompt": 3}, r"`source_prompt` must be a str or a list of 1 str"),
        ({"guidance_scale": -1.0}, r"`guidance_scale` must be a finite number >= 0.0"),
        ({"video": clip(size=7)}, r"`video` frames must have a height and width that are multiples of 2"),
        ({"video": clip()[0]}, r"`video` must have shape \(B, F, H, W, 3\)"),
        ({"output_type": "gif"}, r"`output_type` must be one of"),
    ],
)
def test_bad_edits_are_refused_before_any_model_runs(arguments, message):
    pipe = make_pipeline()
    handles = _models_must_not_run(pipe)
    try:
        with pytest.raises(ValueError, match=message):
            pipe.edit(**{"video": clip(), "prompt": "a blue circle", **arguments})
    finally:
        for handle in handles:
            handle.remove()


def test_a_unet_with_conditioning_channels_cannot_invert_or_edit():
    pipe = KeyframesPipeline(
        **{**tiny_keyframes_components(), "unet": tiny_interpolation_components()["unet"]}
    )
    for method in (pipe.invert, pipe.edit):
        with pytest.raises(ValueError, match="need a stage whose UNet reads only the text"):
            method(clip(), "a blue circle")


def test_a_single_frame_is_no_video_to_edit():
    cascade = CascadePipeline(**tiny_cascade_stages())
    with pytest.raises(ValueError, match="`video` must have at least 2 frames"):
        cascade.edit(clip(frames=1), "a blue circle")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A saved tiny cascade whose later stages take one step (``cascade edit`` sets only the edit's steps)."""
    folder = tmp_path_factory.mktemp("models") / "tiny"
    fast = {name: {"num_inference_steps": 1} for name in STAGE_NAMES[1:]}
    CascadePipeline(**tiny_cascade_stages(), stage_defaults=fast).save_pretrained(folder)
    return folder


def test_cascade_edit_writes_the_cascade_video_from_a_gif(tiny_model, tmp_path, capsys):
    source = tmp_path / "in.gif"
    iio.imwrite(source, (clip(frames=5, size=20)[0] * 255).astype(np.uint8), loop=0)
    output = tmp_path / "edited.mp4"
    argv = ["edit", str(source), "-o", str(output), "--prompt", "a blue circle", "--model", str(tiny_model)]
    assert main([*argv, "--source-prompt", "a red circle", "--frames", "3", "--steps", "2"]) == 0
    assert f"wrote {output}" in capsys.readouterr().out
    # 3 keyframes of 8x8, 4x interpolation: 9 frames; two 4x super-resolution stages: 128x128.
    assert iio.imread(output, index=None).shape == (9, 128, 128, 3)


@pytest.mark.parametrize(
    ("make_input", "args", "message"),
    [
        (lambda folder: folder / "missing.mp4", [], "is neither a video file nor a folder of frames"),
        (lambda folder: folder, [], "is a folder with no images"),
        (lambda folder: folder / "bad.mp4", [], "bad.mp4"),
        (lambda folder: folder / "one.gif", [], "has a single frame; editing needs a video"),
        (lambda folder: folder / "in.gif", ["--steps", "0"], "--steps must be a positive int, got 0"),
        (lambda folder: folder / "in.gif", ["--strength", "1.5"], "--strength must be in (0, 1], got 1.5"),
        (lambda folder: folder / "in.gif", ["-o", "{tmp}/out.avi"], "--output must end in .mp4 or .gif"),
    ],
)
def test_cascade_edit_refuses_bad_input_in_one_line_and_writes_nothing(
    tiny_model, tmp_path, capsys, make_input, args, message
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "bad.mp4").write_bytes(b"not a video")
    iio.imwrite(inputs / "in.gif", (clip(frames=3)[0] * 255).astype(np.uint8), loop=0)
    Image.new("RGB", (8, 8)).save(inputs / "one.gif")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    base = {"-o": str(outputs / "out.mp4"), "--prompt": "a blue circle", "--model": str(tiny_model)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(tmp=outputs)
    argv = ["edit", str(make_input(inputs)), *[item for pair in base.items() for item in pair]]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert list(outputs.iterdir()) == []
